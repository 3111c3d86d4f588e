"""Mesh builders of the validation cases: gmsh on rank 0, written as mesh directories
(XDMF + groups.json) that both backends read — the fenicsx one collectively on every
rank, the scipy one on rank 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._backends import on_root_idle


def mesh_dir(tmp_path_factory: Any, name: str, build_msh: Callable[[Path], Any]) -> str:
    """build_msh(base) writes a named .msh (gmsh, rank 0 only); the mesh directory made
    from it (XDMF + groups.json), which both backends read."""
    from weldsim_hpc import mesh as M

    def build() -> str:
        base = tmp_path_factory.mktemp(name)
        msh = build_msh(base)
        return str(M.write_mesh_dir(M.read_msh(msh), base / "mesh"))

    return on_root_idle(build)


def horn_mesh_dir(tmp_path_factory: Any, name: str, geometry: dict, size: float, segments: int) -> str:
    """A horn geometry meshed by the project's builder (gmsh), as a mesh directory."""
    def build(base: Path) -> Path:
        from weldsim_hpc.geometry import parse_geometry
        from weldsim_hpc.geometry.meshing import generate
        from weldsim_hpc.geometry.sizing import ResolvedSizes

        return generate(parse_geometry(geometry), ResolvedSizes(size, size, size, segments), base).msh

    return mesh_dir(tmp_path_factory, name, build)


def box_msh(path, box, size):
    """A box 0..box, volume 'bar', faces x0 x1 y0 y1 z0 z1 (x0: the face x = 0, …); gmsh."""
    import gmsh

    gmsh.initialize(readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        vol = gmsh.model.occ.addBox(0, 0, 0, *box)
        gmsh.model.occ.synchronize()
        faces = {}
        for _, s in gmsh.model.getBoundary([(3, vol)], oriented=False):
            bb = np.array(gmsh.model.getBoundingBox(2, s)).reshape(2, 3)
            axis = int(np.argmin(bb[1] - bb[0]))
            faces[f"{'xyz'[axis]}{0 if bb[0, axis] < 1e-9 else 1}"] = s
        gmsh.model.setPhysicalName(3, gmsh.model.addPhysicalGroup(3, [vol], 1), "bar")
        for tag, name in enumerate(sorted(faces), start=1):
            gmsh.model.setPhysicalName(2, gmsh.model.addPhysicalGroup(2, [faces[name]], tag), name)
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.option.setNumber("Mesh.MeshSizeMin", size / 2)
        gmsh.model.mesh.generate(3)
        gmsh.write(str(path))
    finally:
        gmsh.finalize()
    return path
