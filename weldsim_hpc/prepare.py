"""Preparing a run directory: the validated case as run, its mesh, and where it came from.

`prepare_run(case, runs_root)` writes, per DESIGN.md "The run directory"::

    <runs_root>/<run_id>/
      case.json        the case as run: every mesh volume's material inline, no library ids
      mesh/            mesh.xdmf + mesh.h5 + groups.json (what the solver reads)
      geometry/        STEP/STL/.msh as built, or the copied mesh-file source (source.msh|.step)
      results/         empty; the job writes metrics.json and fields here
      provenance.json  code, git commit, backend requested, library versions, ranks, host,
                       python, case hash, mesh hash, material values used
      attempts.json    []  (see `run_paths.record_attempt_start` / `record_attempt_end`)

It is built in a hidden ``<runs_root>/.prepare-*`` directory and renamed into place, so an
invalid case or a failed mesh leaves nothing behind and never touches an existing run.

Materials as run. A job never reads a material database: `case.json` maps every volume of
the mesh (foil_01 … foil_NN included, taking the foil_stack material) to the full property
record, and `custom_materials` is empty. Because `materials.py` refuses an inline material
whose id is a built-in one, each record carries the id ``<original id>.as_run`` (e.g.
``d2.as_run``); `original_material_id` strips it, and provenance.json lists the original
id and origin (builtin / custom / inline) per volume. So case.json is an ordinary CaseSpec:
`parse_case` and `resolve_case_materials` work on it unchanged.

Mesh files. A mesh_file case's source is copied to geometry/source.<suffix> and case.json
stores the *relative* path ``geometry/source.msh``; `load_run_case` validates against the
run directory, so the run still validates after the directory is moved (e.g. to scratch).

Runs gmsh (parametric geometries, STEP) in this process: call from a main thread. Never
imports mpi4py or dolfinx: the preparing process may launch mpirun afterwards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import __version__
from .case import CaseSpec
from .case_checks import check_case, material_key_for_volume, resolve_case_materials
from .case_io import parse_case
from .errors import CaseValidationError, WeldSimError
from .geometry.mesh_file import MeshFileGeometry
from .materials import Material
from .mesh import MeshData
from .pipeline import mesh_case
from .run_paths import (  # noqa: F401  (the attempts API is re-exported here)
    RunPaths,
    new_run_id,
    read_attempts,
    record_attempt_end,
    record_attempt_start,
    validate_run_id,
    write_json_atomic,
)

AS_RUN_SUFFIX = ".as_run"
PROVENANCE_FORMAT = 1


class RunExistsError(WeldSimError):
    """A run directory with the requested id exists already."""


def original_material_id(record_id: str) -> str:
    """'d2.as_run' -> 'd2': the library/custom id a case.json material record came from."""
    return record_id.removesuffix(AS_RUN_SUFFIX)


def case_hash(case_data: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of case.json (sorted keys, no spaces, UTF-8).

    `solver.ranks` and `solver.backend` are left out: they say how a run is executed, not
    what is solved, so a checkpoint stays valid when a resumed attempt runs on a different
    number of ranks or on the other 3-D backend (fenicsx and scipy write the same
    checkpoint layout; a checkpoint of the wrong size is refused by its length).
    """
    data = json.loads(json.dumps(case_data))  # a deep copy of plain JSON data
    if isinstance(data.get("solver"), dict):
        data["solver"].pop("ranks", None)
        data["solver"].pop("backend", None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# distribution name (importlib.metadata) -> module name (importlib.util.find_spec)
LIBRARIES = {
    "numpy": "numpy", "scipy": "scipy", "h5py": "h5py", "pydantic": "pydantic", "meshio": "meshio",
    "gmsh": "gmsh", "fenics-dolfinx": "dolfinx", "petsc4py": "petsc4py", "slepc4py": "slepc4py",
    "mpi4py": "mpi4py",
}


def library_version(dist: str, module: str) -> str | None:
    """Installed version of a library WITHOUT importing it (None: not installed).

    Debian's python3-gmsh ships no package metadata: its version is read from the
    GMSH_API_VERSION line of gmsh.py. A module found without a version gives "unknown".
    """
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
    loaded = sys.modules.get(module)
    if loaded is not None and isinstance(getattr(loaded, "__version__", None), str):
        return loaded.__version__
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.origin and spec.origin.endswith(".py"):
        try:
            text = Path(spec.origin).read_text(encoding="utf-8", errors="replace")[:20_000]
        except OSError:
            text = ""
        found = re.search(r'^(?:GMSH_API_VERSION|__version__)\s*=\s*["\']([^"\']+)', text, re.M)
        if found:
            return found.group(1)
    return "unknown"


def git_commit() -> str | None:
    """HEAD of the git checkout holding this package, or None (not a checkout, no git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def environment() -> dict[str, Any]:
    """Code version, git commit, host, python and library versions of this process."""
    return {
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code": {"weldsim_hpc": __version__, "git_commit": git_commit()},
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "libraries": {dist: library_version(dist, module) for dist, module in LIBRARIES.items()},
    }


def _as_run_record(material: Material) -> dict[str, Any]:
    record = material.model_dump(mode="json")
    record["id"] = material.id + AS_RUN_SUFFIX
    return record


def _origin(case: CaseSpec, key: str) -> str:
    value = case.materials[key]
    if not isinstance(value, str):
        return "inline"
    return "custom" if value in case.custom_materials else "builtin"


def inline_materials(case: CaseSpec, mesh: MeshData) -> tuple[dict[str, dict], dict[str, dict]]:
    """(case.json materials, provenance materials) for every volume group of the mesh."""
    resolved, problems = resolve_case_materials(case)
    records: dict[str, dict] = {}
    used: dict[str, dict] = {}
    for volume in mesh.group_names(3):
        key = material_key_for_volume(volume, case.materials)
        if key is None or key not in resolved:
            problems.append(("materials", f"no material for volume '{volume}' of the mesh"))
            continue
        material = resolved[key]
        records[volume] = _as_run_record(material)
        numbers = {k: v for k, v in material.model_dump(mode="json").items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        used[volume] = {"id": material.id, "as_run_id": records[volume]["id"], "origin": _origin(case, key),
                        "name": material.name, **numbers}
    if problems:
        raise CaseValidationError(problems)
    return records, used


def _build(case: CaseSpec, paths: RunPaths, run_id: str) -> None:
    """Fill an empty directory `paths.root` with the complete run directory."""
    data = case.to_json_dict()
    mesh_source = case
    if isinstance(case.geometry, MeshFileGeometry):
        source = paths.geometry_source(Path(case.geometry.path).suffix)
        source.parent.mkdir()
        shutil.copyfile(case.geometry.path, source)
        for companion in case.geometry.companion_files():  # an XDMF's .h5 and groups.json
            shutil.copyfile(companion, source.parent / companion.name)
        data["geometry"]["path"] = source.relative_to(paths.root).as_posix()
        mesh_source = case.model_copy(update={"geometry": MeshFileGeometry(kind="mesh_file", path=str(source))})
    mesh, _ = mesh_case(mesh_source, paths.root)
    data["materials"], used = inline_materials(case, mesh)
    data["custom_materials"] = {}
    parse_case(data, base_dir=paths.root)  # the case as run must validate on its own
    write_json_atomic(paths.case_json, data)
    paths.results_dir.mkdir()
    write_json_atomic(paths.provenance_json, {
        "format_version": PROVENANCE_FORMAT,
        "run_id": run_id,
        **environment(),
        "backend_requested": case.solver.backend,
        "ranks": case.solver.ranks,
        "case_hash": case_hash(data),
        "mesh_hash": mesh.digest(),
        "mesh": {"n_nodes": mesh.n_nodes, "n_cells": mesh.n_cells,
                 "volumes": mesh.group_names(3), "surfaces": mesh.group_names(2)},
        "materials": used,
    })
    write_json_atomic(paths.attempts_json, [])


def prepare_run(case: CaseSpec, runs_root: str | os.PathLike, *, run_id: str | None = None,
                ranks: int | None = None) -> RunPaths:
    """Create <runs_root>/<run_id>/ for `case` and return its RunPaths.

    run_id: None draws a fresh one; a given id is validated and must not exist yet.
    ranks: MPI ranks to run on (None: the case's solver.ranks); stored in case.json's
    solver.ranks and provenance.json. Raises CaseValidationError (invalid case),
    GeometryError / MeshError (gmsh), RunExistsError; on any error nothing is left.

    Example::

        case = load_case("examples/horn_20khz_stepped_modal.toml", preset="ci")
        paths = prepare_run(case, "runs", ranks=2)
    """
    problems = check_case(case)  # a CaseSpec built by model_validate skipped the cross checks
    if problems:
        raise CaseValidationError(problems)
    if ranks is not None:
        if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
            raise CaseValidationError([("solver.ranks", f"ranks must be a positive integer, got {ranks!r}")])
        case = case.model_copy(update={"solver": case.solver.model_copy(update={"ranks": ranks})})
    runs_root = Path(runs_root).absolute()
    if run_id is None:
        run_id = new_run_id()
        while (runs_root / run_id).exists():
            run_id = new_run_id()
    final = RunPaths.for_id(runs_root, validate_run_id(run_id))
    if final.root.exists():
        raise RunExistsError(f"run directory {final.root} exists already; choose another run id")
    made = [d for d in (runs_root, *runs_root.parents) if not d.exists()]  # removed again on failure
    runs_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=runs_root))
    try:
        work = RunPaths(staging / run_id, run_id)
        work.root.mkdir()
        _build(case, work, run_id)
        if final.root.exists():  # appeared meanwhile: never replace it
            raise RunExistsError(f"run directory {final.root} appeared while preparing; nothing was changed")
        os.rename(work.root, final.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in made:
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        raise
    staging.rmdir()
    return final


def load_run_case(paths: RunPaths) -> CaseSpec:
    """case.json of a prepared run, validated against its own directory.

    Mesh-file paths resolve inside the run directory; every material must be inline
    (a run never looks up a material library or database).
    """
    try:
        data = json.loads(paths.case_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaseValidationError([("", f"{paths.case_json}: no such file (is {paths.root} a prepared run?)")]) from None
    except (OSError, ValueError) as exc:
        raise CaseValidationError([("", f"{paths.case_json}: unreadable ({exc})")]) from None
    if not isinstance(data, dict):
        raise CaseValidationError([("", f"{paths.case_json}: the top level must be an object")])
    problems = [(f"materials.{v}", "a run case must carry the material inline, not the id "
                 f"'{m}' (prepare the run again)") for v, m in (data.get("materials") or {}).items()
                if isinstance(m, str)]
    if data.get("custom_materials"):
        problems.append(("custom_materials", "a run case carries its materials inline; this must be empty"))
    if problems:
        raise CaseValidationError(problems)
    case = parse_case(data, base_dir=paths.root)
    if isinstance(case.geometry, MeshFileGeometry) and not Path(case.geometry.path).is_relative_to(paths.root.resolve()):
        raise CaseValidationError([("geometry.path", f"{case.geometry.path} lies outside the run directory {paths.root}")])
    return case


def run_materials(case: CaseSpec) -> dict[str, Material]:
    """Volume group -> Material of a run case (all inline: no library is read)."""
    materials, problems = resolve_case_materials(case)
    if problems:
        raise CaseValidationError(problems)
    return materials

