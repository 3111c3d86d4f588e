"""The Apptainer part of a job step: ``apptainer exec --bind … IMAGE`` before the entry point.

The image (Apptainer.def, containers/README.md) installs the project into the system
python, so a Slurm job step that runs in the image is::

    srun --mpi=pmix -n N  apptainer exec --bind /scratch/runs:/scratch/runs IMAGE \\
        python3 -m weldsim_hpc.run /scratch/runs/k3v9x0q2m7ab

built as ``[*srun_args, *apptainer_prefix(image, [runs_root, *binds]), python_in_image(),
"-m", "weldsim_hpc.run", run_dir]``. Both functions are pure apart from the check that
the image file exists; nothing here runs apptainer (it is not installable from this
machine's package sources, and the job runs on a compute node).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import WeldSimError

IMAGE_SUFFIXES = (".sif", ".simg")


class ContainerConfigError(WeldSimError, ValueError):
    """An image or bind path that `apptainer exec` cannot use (a ValueError as well)."""


def python_in_image() -> str:
    """The interpreter inside the image: the system python3 the image installs into."""
    return "python3"


def _check_image(image: str | os.PathLike) -> str:
    text = os.fspath(image)
    if not isinstance(text, str) or not text:
        raise ContainerConfigError("the Apptainer image path is empty; give the .sif file built by "
                                   "containers/build.sh")
    if not text.endswith(IMAGE_SUFFIXES):
        raise ContainerConfigError(f"the Apptainer image must be a .sif (or legacy .simg) file, got {text!r}; "
                                   "build one with containers/build.sh")
    path = Path(text)
    if not path.is_file():
        what = "is a directory, not an image file" if path.is_dir() else "does not exist"
        raise ContainerConfigError(f"the Apptainer image {text} {what}; build it with containers/build.sh "
                                   "and copy it to a path the compute nodes can read")
    return os.path.abspath(text)


def _check_bind(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    if not isinstance(text, str):
        raise ContainerConfigError(f"bind path {text!r} must be text, not bytes")
    if not text.startswith("/"):
        raise ContainerConfigError(f"bind path {text!r} must be absolute: it is mounted at the same place "
                                   "inside the image, and a relative path would depend on the job's "
                                   "working directory")
    bad = sorted({c for c in text if c in ",:"})
    if bad:
        raise ContainerConfigError(f"bind path {text!r} contains {' and '.join(repr(c) for c in bad)}: "
                                   "apptainer --bind separates binds with ',' and source from destination "
                                   "with ':', so such a path cannot be bound; rename or symlink it")
    if "\n" in text or "\0" in text:
        raise ContainerConfigError(f"bind path {text!r} contains a newline or NUL character")
    normal = os.path.normpath(text)
    if normal in ("/", "//"):
        raise ContainerConfigError("bind path '/' would cover the image's own file system; bind the "
                                   "runs directory (and any other data directory) instead")
    return normal


def apptainer_prefix(image: str | os.PathLike, binds: Sequence[str | os.PathLike], *,
                     apptainer: str = "apptainer") -> list[str]:
    """The argv prefix that runs a command in `image`: ``[apptainer, "exec", "--bind", …, IMAGE]``.

    Every bind path is mounted at the same path inside the image (``a:a,b:b``; repeated
    paths once, in the order given); with no binds, ``--bind`` is left out. The image
    comes back absolute. Raises ContainerConfigError (a ValueError) when the image is not
    an existing .sif/.simg file, a bind path is relative or holds ',' or ':', or
    `apptainer` is not a program name (e.g. "apptainer", "singularity", an absolute path).
    """
    if not isinstance(apptainer, str) or not apptainer.strip() or apptainer != apptainer.strip() \
            or any(c.isspace() for c in apptainer):
        raise ContainerConfigError(f"the container program must be a name such as 'apptainer' or "
                                   f"'singularity' (or an absolute path), got {apptainer!r}")
    if isinstance(binds, (str, bytes, os.PathLike)):
        raise ContainerConfigError(f"binds must be a list of paths, not the single path {os.fspath(binds)!r}")
    image_path = _check_image(image)
    seen: dict[str, None] = {}
    for b in binds:
        seen.setdefault(_check_bind(b), None)
    argv = [apptainer, "exec"]
    if seen:
        argv += ["--bind", ",".join(f"{p}:{p}" for p in seen)]
    return argv + [image_path]
