"""Meshing and file output: physical groups, size fields, linear tetrahedra, files.

`generate(geometry, sizes, out_dir)` owns one gmsh session (initialise ... finalise) and
must run in the main thread of its process (gmsh 4.8 installs signal handlers). Callers in
threads (a Flask request, a dask worker) use `generate_in_subprocess`, which runs

    python -m weldsim_hpc.geometry.meshing PARAMS.json SIZES.json OUT_DIR [STEM]

under `sys.executable` and re-raises its errors (GeometryError / MeshError).

Files written to out_dir, one geometry per directory (stem default "geometry"):
  <stem>.step   the solid, millimetre-declared with correct numbers (see step_io)
  <stem>.stl    the surface mesh, in metres (STL has no unit)
  <stem>.msh    gmsh MSH 4.1 (ASCII): tetrahedra and boundary triangles of the groups
  groups.json   name -> {"dim": d, "tag": physical tag}
Physical tags are deterministic: volumes 1, 2, ... and surfaces 101, 102, ... in the
order the builder lists its groups (horns: horn 1; input_face 101, output_face 102,
lateral 103). The mesh is linear (order 1); Netgen optimisation is used when this gmsh
has it (Debian's 4.8 does not), gmsh's own optimiser always.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import ValidationError

from ..errors import GeometryError, MeshError, WeldSimError
from .model import BuiltGeometry
from .sizing import (
    DEFAULT_MAX_CELLS,
    MeshSettings,
    ResolvedSizes,
    check_cell_limit,
    resolve_sizes,
)
from .step_io import quiet_c_stdout, write_step

VOLUME_TAG_START, SURFACE_TAG_START = 1, 101
_STEM = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class GeneratedFiles:
    """Paths of the files `generate` wrote."""

    step: Path
    stl: Path
    msh: Path
    groups_json: Path


def physical_groups(built: BuiltGeometry) -> dict[str, dict[str, int]]:
    """Add named physical groups for `built` (volumes dim 3, surfaces dim 2) to the
    current gmsh model; return name -> {"dim", "tag"}."""
    import gmsh

    groups: dict[str, dict[str, int]] = {}
    for dim, start, members in ((3, VOLUME_TAG_START, built.volumes),
                                (2, SURFACE_TAG_START, built.surfaces)):
        for i, (name, tags) in enumerate(members.items()):
            if not tags:
                raise GeometryError(f"group {name!r} is empty: the builder found no "
                                    f"{'volume' if dim == 3 else 'surface'} for it")
            tag = gmsh.model.addPhysicalGroup(dim, list(tags), start + i)
            gmsh.model.setPhysicalName(dim, tag, name)
            groups[name] = {"dim": dim, "tag": tag}
    return groups


def apply_sizes(built: BuiltGeometry, sizes: ResolvedSizes) -> None:
    """Set gmsh's size options and the refinement field for `sizes` (see geometry.sizing)."""
    import gmsh

    opt = gmsh.option.setNumber
    opt("Mesh.MeshSizeMax", sizes.size_m)
    opt("Mesh.MeshSizeMin", 0.0)
    opt("Mesh.MeshSizeFromPoints", 0)
    opt("Mesh.MeshSizeExtendFromBoundary", 0)  # sizes from fields, not smeared from edges
    opt("Mesh.MeshSizeFromCurvature", sizes.curvature_segments)
    opt("Mesh.ElementOrder", 1)
    opt("Mesh.Optimize", 1)  # gmsh's own tetrahedron optimiser (always available)
    opt("Mesh.OptimizeNetgen", 1 if sizes.optimize and _has_netgen() else 0)
    field = gmsh.model.mesh.field
    if built.refine_surfaces and sizes.refine_size_m < sizes.size_m:
        distance = field.add("Distance")
        field.setNumbers(distance, "SurfacesList", list(built.refine_surfaces))
        threshold = field.add("Threshold")
        field.setNumber(threshold, "InField", distance)
        field.setNumber(threshold, "SizeMin", sizes.refine_size_m)
        field.setNumber(threshold, "SizeMax", sizes.size_m)
        field.setNumber(threshold, "DistMin", sizes.refine_distance_m)
        field.setNumber(threshold, "DistMax", 2 * sizes.refine_distance_m)
        field.setAsBackgroundMesh(threshold)
    # else: no field; Mesh.MeshSizeMax and the curvature rule set the sizes


def mesh_built(built: BuiltGeometry, msh_path: str | os.PathLike, *,
               sizes: ResolvedSizes | None = None, size_m: float | None = None,
               min_size_m: float | None = None, refine_size_m: float | None = None,
               refine_distance_m: float | None = None, curvature_segments: int = 32,
               optimize: bool = True,
               max_cells: int = DEFAULT_MAX_CELLS) -> dict[str, dict[str, int]]:
    """Mesh an already built geometry in the current gmsh session and write `msh_path`.

    Adds the physical groups, sets the sizes (a ResolvedSizes, or the keyword sizes in
    metres: size_m None -> a quarter of the model's smallest bounding-box extent,
    refine_size_m None -> size_m / 2, refine_distance_m None -> size_m; min_size_m is
    gmsh's lower bound), meshes 3-D with linear tetrahedra and writes MSH 4.1 (ASCII).
    Before meshing, the cell estimate from the OCC volumes and refine areas (curvature
    not counted) must stay within sizes.max_cells (MeshError otherwise).
    Returns name -> {"dim", "tag"}. For STEP horns (mesh.py) and `generate`.
    """
    import gmsh

    if sizes is None:
        if size_m is None:
            box = gmsh.model.getBoundingBox(-1, -1)
            size_m = min(box[3] - box[0], box[4] - box[1], box[5] - box[2]) / 4
        sizes = ResolvedSizes(size_m, refine_size_m or size_m / 2,
                              refine_distance_m or size_m, curvature_segments,
                              max_cells, optimize, rule="mesh_built")
    check_cell_limit(_OccShape(built), sizes)
    groups = physical_groups(built)
    apply_sizes(built, sizes)
    if min_size_m is not None:
        gmsh.option.setNumber("Mesh.MeshSizeMin", min_size_m)
    with quiet_c_stdout():
        gmsh.model.mesh.generate(3)
    _check_mesh(groups)
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.option.setNumber("Mesh.Binary", 0)
    gmsh.option.setNumber("Mesh.SaveAll", 0)
    gmsh.write(str(msh_path))
    return groups


def generate(geometry, sizes: ResolvedSizes | MeshSettings, out_dir: str | os.PathLike,
             *, stem: str = "geometry", shear_speed_m_s: float | None = None,
             target_frequency_Hz: float | None = None,
             element_order: int = 2) -> GeneratedFiles:
    """Build `geometry`, mesh it with linear tetrahedra and write STEP, STL, MSH, groups.

    `sizes` is a ResolvedSizes, or MeshSettings resolved with the keyword arguments (see
    `sizing.resolve_sizes`). Refuses (MeshError) before meshing when the estimated cell
    count exceeds sizes.max_cells. Must run in the process's main thread.
    """
    if isinstance(sizes, MeshSettings):
        sizes = resolve_sizes(sizes, geometry, shear_speed_m_s, target_frequency_Hz,
                              element_order)
    if not _STEM.fullmatch(stem):
        raise GeometryError(f"stem {stem!r}: use 1-64 letters, digits, '_' or '-'")
    if threading.current_thread() is not threading.main_thread():
        raise GeometryError("gmsh can only run in the main thread of a process: call "
                            "generate_in_subprocess() from threads")
    check_cell_limit(geometry, sizes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = GeneratedFiles(out / f"{stem}.step", out / f"{stem}.stl", out / f"{stem}.msh",
                           out / "groups.json")
    import gmsh

    gmsh.initialize(readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add(stem)
        built = geometry.build()
        _check_groups(geometry, built)
        write_step(files.step)
        groups = mesh_built(built, files.msh, sizes=sizes)
        gmsh.write(str(files.stl))
    except WeldSimError:
        raise
    except Exception as exc:  # gmsh raises bare Exceptions carrying its last error
        raise MeshError(f"gmsh failed on the {getattr(geometry, 'kind', '?')} geometry: "
                        f"{exc}") from exc
    finally:
        gmsh.finalize()
    files.groups_json.write_text(json.dumps(groups, indent=2) + "\n")
    return files


def generate_in_subprocess(geometry, sizes: ResolvedSizes | MeshSettings,
                           out_dir: str | os.PathLike, *, stem: str = "geometry",
                           shear_speed_m_s: float | None = None,
                           target_frequency_Hz: float | None = None, element_order: int = 2,
                           timeout_s: float | None = 600) -> GeneratedFiles:
    """Run `generate` in a fresh `sys.executable` process (safe from any thread).

    Same arguments as `generate`; sizes are resolved here. Errors of the child come back
    as GeometryError or MeshError with its message; a timeout is a MeshError.
    """
    if isinstance(sizes, MeshSettings):
        sizes = resolve_sizes(sizes, geometry, shear_speed_m_s, target_frequency_Hz,
                              element_order)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="weldsim-geometry-") as tmp:
        params, settings = Path(tmp, "params.json"), Path(tmp, "sizes.json")
        params.write_text(geometry.model_dump_json())
        settings.write_text(json.dumps(asdict(sizes)))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "weldsim_hpc.geometry.meshing", str(params),
                 str(settings), str(out), stem],
                capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise MeshError(f"geometry generation took longer than {timeout_s} s") from exc
    try:
        reply = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise MeshError(f"geometry subprocess failed (exit {proc.returncode}): "
                        f"{proc.stderr.strip()[-2000:]}") from None
    if not reply.get("ok"):
        error = {"GeometryError": GeometryError}.get(reply.get("error"), MeshError)
        raise error(reply.get("message", "geometry subprocess failed"))
    return GeneratedFiles(**{k: Path(v) for k, v in reply["files"].items()})


def main(argv: list[str] | None = None) -> int:
    """`PARAMS.json SIZES.json OUT_DIR [STEM]`: generate and print one JSON line.

    PARAMS.json is a GeometryParams (with `kind`); SIZES.json a ResolvedSizes or a
    MeshSettings (then size_m is required). Exit 0 on success, 2 on a WeldSimError.
    """
    from . import parse_geometry

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4):
        print("usage: PARAMS.json SIZES.json OUT_DIR [STEM]", file=sys.stderr)
        return 2
    try:
        geometry = parse_geometry(json.loads(Path(args[0]).read_text()))
        raw = json.loads(Path(args[1]).read_text())
        sizes = ResolvedSizes(**raw) if "rule" in raw else MeshSettings(**raw)
        files = generate(geometry, sizes, args[2], stem=args[3] if len(args) == 4 else "geometry")
    except ValidationError as exc:
        print(json.dumps({"ok": False, "error": "GeometryError",
                          "message": _describe(exc)}))
        return 2
    except (ValueError, TypeError, OSError) as exc:  # unreadable or malformed JSON files
        print(json.dumps({"ok": False, "error": "GeometryError", "message": str(exc)}))
        return 2
    except WeldSimError as exc:
        print(json.dumps({"ok": False, "error": type(exc).__name__, "message": str(exc)}))
        return 2
    print(json.dumps({"ok": True, "files": {k: str(v) for k, v in asdict(files).items()}}))
    return 0


class _OccShape:
    """The parts of the geometry protocol the cell estimate needs, measured by OCC."""

    def __init__(self, built: BuiltGeometry):
        import gmsh

        mass = gmsh.model.occ.getMass
        self._volume = sum(mass(3, t) for tags in built.volumes.values() for t in tags)
        self._refine = sum(mass(2, t) for t in built.refine_surfaces)

    def volume_m3(self) -> float:
        return self._volume

    def refine_area_m2(self) -> float:
        return self._refine


def _describe(exc: ValidationError) -> str:
    """'field: reason; ...' from a pydantic error (the union's kind tag left out)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"][1:] if not isinstance(x, int))
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _has_netgen() -> bool:
    """Whether this gmsh was built with Netgen (Debian's gmsh 4.8 is not)."""
    import gmsh

    return "Netgen" in gmsh.option.getString("General.BuildOptions").split()


def _check_groups(geometry, built: BuiltGeometry) -> None:
    """The builder's groups must be exactly the ones `geometry.groups()` promises."""
    found = {**{n: 3 for n in built.volumes}, **{n: 2 for n in built.surfaces}}
    if found != geometry.groups():
        raise GeometryError(f"builder groups {found} differ from the declared "
                            f"{geometry.groups()}")


def _check_mesh(groups: dict[str, dict[str, int]]) -> None:
    import gmsh

    for name, g in groups.items():
        tags = gmsh.model.getEntitiesForPhysicalGroup(g["dim"], g["tag"])
        if not any(len(gmsh.model.mesh.getElements(g["dim"], t)[1]) for t in tags):
            raise MeshError(f"group {name!r} received no elements")


if __name__ == "__main__":
    sys.exit(main())
