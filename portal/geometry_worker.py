"""`python -m portal.geometry_worker`: one geometry job (gmsh, meshio) in a process of its own.

Why a process: gmsh 4.8 runs only in the main thread of a process (DESIGN.md), so the
portal's request and job threads start this module (portal.geometry_jobs) the way runs
start weldsim_hpc.prepare_job: ONE line of JSON on stdin (kept open: when it closes early
the parent died and the job stops itself), ONE line of JSON on stdout; gmsh's chatter goes
to stderr. Never imports mpi4py or dolfinx, and touches no database.

Requests (every path absolute; `dir` is the version's directory, storage/geometries/<id>)::

    {"op": "generate",   "params": {<GeometryParams with kind>}, "dir": …}   STEP + STL + preview
    {"op": "group_step", "step": "…/source.step", "dir": …}                   group a STEP horn; STL + preview
    {"op": "mesh", "params": {…} | "step": "…", "sizes": {…}, "dir": …}        mesh.msh + groups.json + preview
    {"op": "check_msh",  "msh": "…/source.msh", "dir": …}                     read and check an uploaded mesh

`sizes` is a weldsim_hpc ResolvedSizes (parametric, resolved by the portal) or MeshSettings
fields (STEP: a missing size_m meshes at a quarter of the smallest extent). Results::

    {"ok": true, "files": ["geometry.step", "geometry.stl", "preview.json"], "groups": {"horn": 3, …},
     "mesh_info": {…} | null}
    {"ok": false, "error": "GeometryError: … no planar end face …"}

Files are written under `dir`/.work-<pid> and renamed into place at the end, so a
version's directory never holds half-written files under their final names.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

STEP, STL, MSH, GROUPS, PREVIEW = "geometry.step", "geometry.stl", "mesh.msh", "groups.json", "preview.json"
#: coarse surface mesh for the STL and the preview of a generated (not yet meshed) geometry:
#: the largest element is this fraction of the largest extent
SURFACE_SIZE_FRACTION = 1 / 25


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Do one job; the result dict. Raises WeldSimError (bad geometry, meshing failed)."""
    out = Path(request["dir"])
    work = out / f".work-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        op = request.get("op")
        if op in ("generate", "group_step"):
            result = _surface_job(request, work)
        elif op == "mesh":
            result = _mesh_job(request, work)
        elif op == "check_msh":
            result = _mesh_result(Path(request["msh"]), work)
        else:
            raise ValueError(f"unknown op {op!r}")
        for name in result["files"]:
            os.replace(work / name, out / name)
        return {"ok": True, **result}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _surface_job(request: dict[str, Any], work: Path) -> dict[str, Any]:
    """Build (params) or import and group (STEP), then a coarse surface mesh: STL + preview."""
    import gmsh

    from weldsim_hpc.errors import GeometryError, WeldSimError
    from weldsim_hpc.geometry import parse_geometry
    from weldsim_hpc.geometry.meshing import physical_groups
    from weldsim_hpc.geometry.step_io import import_step_horn, write_step

    files = []
    gmsh.initialize(readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("geometry")
        if request["op"] == "generate":
            built = parse_geometry(request["params"]).build()
            write_step(work / STEP)
            files.append(STEP)
        else:
            built = import_step_horn(request["step"])
        groups = physical_groups(built)
        box = gmsh.model.getBoundingBox(-1, -1)
        extent = max(box[3] - box[0], box[4] - box[1], box[5] - box[2])
        gmsh.option.setNumber("Mesh.MeshSizeMax", extent * SURFACE_SIZE_FRACTION)
        gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 24)
        gmsh.option.setNumber("Mesh.SaveAll", 0)
        try:
            gmsh.model.mesh.generate(2)
        except Exception as exc:  # gmsh raises bare Exceptions with its last error
            raise GeometryError(f"gmsh could not mesh the surface: {exc}") from exc
        gmsh.write(str(work / STL))
        surface = _gmsh_surface(groups)
    except WeldSimError:
        raise
    except Exception as exc:
        raise GeometryError(f"gmsh failed: {exc}") from exc
    finally:
        gmsh.finalize()
    _write_preview(surface, "geometry", work)
    return {"files": files + [STL, PREVIEW], "groups": {n: g["dim"] for n, g in groups.items()},
            "mesh_info": None}


def _gmsh_surface(groups: dict[str, dict[str, int]]):
    """The triangles of the current gmsh model's surface groups, as a preview Surface."""
    import gmsh
    import numpy as np

    from .services.geometry_preview import Surface

    tags, coords, _ = gmsh.model.mesh.getNodes()
    index = np.full(int(tags.max()) + 1, -1, dtype=np.int64)
    index[tags.astype(np.int64)] = np.arange(len(tags))
    names = tuple(n for n, g in groups.items() if g["dim"] == 2)
    faces, face_groups = [], []
    for i, name in enumerate(names):
        for entity in gmsh.model.getEntitiesForPhysicalGroup(2, groups[name]["tag"]):
            types, _, nodes = gmsh.model.mesh.getElements(2, entity)
            for etype, enodes in zip(types, nodes):
                if etype == 2:  # 3-node triangle
                    tri = index[np.asarray(enodes, dtype=np.int64).reshape(-1, 3)]
                    faces.append(tri)
                    face_groups.append(np.full(len(tri), i, dtype=np.int64))
    faces_arr = np.concatenate(faces) if faces else np.empty((0, 3), dtype=np.int64)
    groups_arr = np.concatenate(face_groups) if face_groups else np.empty(0, dtype=np.int64)
    return Surface(coords.reshape(-1, 3), faces_arr, groups_arr, names)


def _mesh_job(request: dict[str, Any], work: Path) -> dict[str, Any]:
    """Mesh from the parameters (weldsim_hpc's generate) or the STEP horn (grouped again)."""
    from weldsim_hpc.errors import MeshError, WeldSimError
    from weldsim_hpc.geometry import parse_geometry
    from weldsim_hpc.geometry.meshing import generate, mesh_built
    from weldsim_hpc.geometry.sizing import ResolvedSizes
    from weldsim_hpc.geometry.step_io import import_step_horn

    if request.get("params") is not None:
        files = generate(parse_geometry(request["params"]), ResolvedSizes(**request["sizes"]), work, stem="geometry")
        os.replace(files.msh, work / MSH)
        extra = [STEP, STL, GROUPS]
    else:
        import gmsh

        gmsh.initialize(readConfigFiles=False)
        try:
            gmsh.option.setNumber("General.Terminal", 0)
            gmsh.model.add("step")
            built = import_step_horn(request["step"])
            groups = mesh_built(built, work / MSH, **request["sizes"])
            gmsh.write(str(work / STL))
        except WeldSimError:
            raise
        except Exception as exc:  # gmsh raises bare Exceptions with its last error
            raise MeshError(f"gmsh could not mesh the STEP horn: {exc}") from exc
        finally:
            gmsh.finalize()
        (work / GROUPS).write_text(json.dumps(groups, indent=2) + "\n")
        extra = [STL, GROUPS]
    result = _mesh_result(work / MSH, work)
    result["files"] = [MSH, *extra, PREVIEW]
    return result


def _mesh_result(msh: Path, work: Path) -> dict[str, Any]:
    """Read a .msh with weldsim_hpc.mesh (meshio): its info, groups and the preview."""
    from weldsim_hpc.mesh import mesh_info, read_msh

    from .services.geometry_preview import boundary_surface

    mesh = read_msh(msh)
    _write_preview(boundary_surface(mesh), "mesh", work)
    return {"files": [PREVIEW], "groups": {n: d for n, (d, _) in mesh.groups.items()},
            "mesh_info": mesh_info(mesh).as_dict()}


def _write_preview(surface, source: str, work: Path) -> None:
    from .services.geometry_preview import preview_document

    (work / PREVIEW).write_text(json.dumps(preview_document(surface, source=source), separators=(",", ":")))


# --- the process ------------------------------------------------------------------------------

def main() -> int:
    from pydantic import ValidationError

    from weldsim_hpc.errors import WeldSimError
    from weldsim_hpc.job_process import open_job, watch_parent

    reply, stdin = open_job()
    try:
        request = json.loads(stdin.readline())
        if not isinstance(request, dict) or not request.get("dir"):
            raise ValueError("expected an object with 'op' and 'dir'")
    except ValueError as exc:
        return reply({"ok": False, "error": f"bad request: {exc}"}, 1)
    watch_parent(stdin)
    try:
        return reply(run(request), 0)
    except (WeldSimError, ValidationError, OSError, ValueError, TypeError, KeyError) as exc:
        return reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 2)


if __name__ == "__main__":
    sys.exit(main())
