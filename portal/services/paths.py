"""Where the portal keeps files: built only from validated ids, never from names.

    <storage_root>/projects/<project id>/   a project's uploaded files
    <storage_root>/geometries/<version id>/ a geometry version's files (services.geometries)
    <runs_root>/<run id>/                   a run directory (weldsim_hpc.run_paths.RunPaths)

Example::

    project_dir(Path("/srv/storage"), 7)     # /srv/storage/projects/7
"""

from __future__ import annotations

from pathlib import Path

from weldsim_hpc.run_paths import RunPaths

PROJECTS_DIR = "projects"
GEOMETRIES_DIR = "geometries"


def project_dir(storage_root: Path, project_id: int) -> Path:
    """The directory of a project's files (not created here)."""
    if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id < 1:
        raise ValueError(f"project id must be a positive integer, got {project_id!r}")
    return Path(storage_root) / PROJECTS_DIR / str(project_id)


def geometry_dir(storage_root: Path, version_id: int) -> Path:
    """The directory of a geometry version's files (not created here)."""
    if isinstance(version_id, bool) or not isinstance(version_id, int) or version_id < 1:
        raise ValueError(f"geometry version id must be a positive integer, got {version_id!r}")
    return Path(storage_root) / GEOMETRIES_DIR / str(version_id)


def run_dir(runs_root: Path, run_id: str) -> Path:
    """The directory of a run; RunIdError unless `run_id` is a well-formed run id."""
    return RunPaths.for_id(runs_root, run_id).root


def inside(root: Path, relative: str) -> Path:
    """`root / relative`, resolved; ValueError if it would leave `root` (.., absolute, symlinks)."""
    root = Path(root).resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise ValueError(f"{relative!r} is not inside {root}")
    return path
