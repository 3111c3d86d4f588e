"""The first half of the data path: a validated case -> geometry files -> mesh directory.

gmsh runs here, in the calling process: call these from a process's main thread (the
CLI, a job, a subprocess), never from a web request or a worker thread. Without gmsh,
`mesh_case` falls back to the structured numpy mesher (cylinder, block, stepped horns).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from .case import CaseSpec
from .case_checks import resolve_case_materials, resolve_case_sizes
from .errors import CaseValidationError, GeometryError, MeshError
from .geometry.mesh_file import MeshFileGeometry
from .mesh import MeshData, read_mesh_file, read_msh, write_mesh_dir

GEOMETRY_DIR = "geometry"
MESH_DIR = "mesh"


def build_geometry_files(case: CaseSpec, out_dir: str | Path) -> dict[str, Path]:
    """Build and mesh a parametric geometry: STEP, STL, .msh and groups.json under out_dir."""
    if isinstance(case.geometry, MeshFileGeometry):
        raise GeometryError(f"the geometry is a file already ({case.geometry.path}); use `weldsim mesh`")
    materials, problems = resolve_case_materials(case)
    if problems:
        raise CaseValidationError(problems)
    from .geometry import generate

    sizes = resolve_case_sizes(case, materials)
    files = generate(case.geometry, sizes, Path(out_dir))
    return {"step": files.step, "stl": files.stl, "msh": files.msh, "groups": files.groups_json}


MESHERS = ("auto", "gmsh", "structured")
_GMSH_HINT = "pip install gmsh, or on Debian apt install python3-gmsh"
log = logging.getLogger(__name__)


def gmsh_available() -> bool:
    """True when the gmsh Python module can be imported (it is not imported here)."""
    return importlib.util.find_spec("gmsh") is not None


def mesh_case(case: CaseSpec, out_dir: str | Path,
              mesher: str = "auto") -> tuple[MeshData, Path]:
    """Mesh a case into out_dir/mesh (XDMF with cell and facet tags, groups.json).

    mesher: "gmsh" (OCC geometry + gmsh tetrahedra), "structured" (the numpy mesher of
    `geometry.structured`: cylinder, block and stepped horns; the fillet becomes a straight
    ramp, round sections N-gons — the note is logged at INFO), or "auto": gmsh when it is
    installed, else the structured mesher for the kinds it handles. Mesh files are read
    as they are, whatever the mesher.
    """
    if mesher not in MESHERS:
        raise GeometryError(f"mesher {mesher!r} is unknown (valid: {', '.join(MESHERS)})")
    out_dir = Path(out_dir)
    if isinstance(case.geometry, MeshFileGeometry):
        options = {}
        if case.geometry.is_step and case.mesh.size_m is not None:
            options["size_m"] = case.mesh.size_m
        mesh = read_mesh_file(case.geometry.path, **options)
    elif mesher == "structured" or (mesher == "auto" and not gmsh_available()):
        mesh = _structured(case)
    else:
        if not gmsh_available():
            raise GeometryError(f"mesher 'gmsh' was asked for but gmsh is not installed: "
                                f"{_GMSH_HINT} (or use mesher 'structured' for cylinder, "
                                "block and stepped horns)")
        files = build_geometry_files(case, out_dir / GEOMETRY_DIR)
        mesh = read_msh(files["msh"])
    return mesh, write_mesh_dir(mesh, out_dir / MESH_DIR)


def _structured(case: CaseSpec) -> MeshData:
    from .geometry.structured import SUPPORTED_KINDS, approximation_note, structured_mesh

    kind = getattr(case.geometry, "kind", type(case.geometry).__name__)
    if kind not in SUPPORTED_KINDS:
        why = "was asked for" if gmsh_available() else "is the fallback without gmsh"
        raise GeometryError(f"geometry kind '{kind}' needs gmsh to be meshed: the structured "
                            f"mesher, which {why}, handles only {', '.join(SUPPORTED_KINDS)} "
                            f"horns; install gmsh ({_GMSH_HINT})")
    materials, problems = resolve_case_materials(case)
    if problems:
        raise CaseValidationError(problems)
    sizes = resolve_case_sizes(case, materials)
    mesh = structured_mesh(case.geometry, sizes)
    if mesh.n_cells > sizes.max_cells:
        raise MeshError(f"the structured mesh has {mesh.n_cells:,} cells, over the limit of "
                        f"{sizes.max_cells:,}: raise mesh.size_m or mesh.max_cells")
    log.info("%s", approximation_note(case.geometry, sizes))
    return mesh
