"""The first half of the data path: a validated case -> geometry files -> mesh directory.

gmsh runs here, in the calling process: call these from a process's main thread (the
CLI, a job, a subprocess), never from a web request or a worker thread.
"""

from __future__ import annotations

from pathlib import Path

from .case import CaseSpec
from .case_checks import resolve_case_materials, resolve_case_sizes
from .errors import CaseValidationError, GeometryError
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


def mesh_case(case: CaseSpec, out_dir: str | Path) -> tuple[MeshData, Path]:
    """Mesh a case into out_dir/mesh (XDMF with cell and facet tags, groups.json)."""
    out_dir = Path(out_dir)
    if isinstance(case.geometry, MeshFileGeometry):
        options = {}
        if case.geometry.is_step and case.mesh.size_m is not None:
            options["size_m"] = case.mesh.size_m
        mesh = read_mesh_file(case.geometry.path, **options)
    else:
        files = build_geometry_files(case, out_dir / GEOMETRY_DIR)
        mesh = read_msh(files["msh"])
    return mesh, write_mesh_dir(mesh, out_dir / MESH_DIR)
