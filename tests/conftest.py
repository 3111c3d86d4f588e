"""Shared fixtures. Keep small: only what several test packages need.

`msh_builder` — writes a small named gmsh test mesh (cylinder or box along +z with
horn / input_face / output_face / lateral); `step_builder` — a STEP cylinder horn (or a
sphere). Both run gmsh in THIS process's main thread; under MPI call them on rank 0 only
and broadcast the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# tests/mpi imports mpi4py, which must not happen in a plain pytest process (a process
# that imported mpi4py cannot launch mpirun later); it runs under `mpirun -n 2` instead.
UNDER_MPI = any(v in os.environ for v in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"))
collect_ignore = [] if UNDER_MPI else ["mpi"]


def _build_msh(path: Path, shape: str = "cylinder", *, radius: float = 0.02, length: float = 0.04,
               box: tuple[float, float, float] = (0.03, 0.02, 0.01), size: float = 0.0025,
               overlap: bool = False, named: bool = True, version: float = 4.1,
               binary: bool = False) -> Path:
    """Mesh a cylinder (Ø 2·radius, axis z, 0..length) or box at the origin; return path.

    overlap=True also puts the output face into `lateral` (a facet in two groups);
    named=False writes no physical groups at all.
    """
    import gmsh

    gmsh.initialize()
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("test")
        occ = gmsh.model.occ
        if shape == "cylinder":
            vol = occ.addCylinder(0, 0, 0, 0, 0, length, radius)
            top = length
        else:
            vol = occ.addBox(0, 0, 0, *box)
            top = box[2]
        occ.synchronize()
        faces = {"input_face": [], "output_face": [], "lateral": []}
        for _, s in gmsh.model.getBoundary([(3, vol)], oriented=False):
            zmin, zmax = gmsh.model.getBoundingBox(2, s)[2::3]
            key = "input_face" if zmax < 1e-6 else "output_face" if zmin > top - 1e-6 else "lateral"
            faces[key].append(s)
        if overlap:
            faces["lateral"] += faces["output_face"]
        if named:
            gmsh.model.setPhysicalName(3, gmsh.model.addPhysicalGroup(3, [vol], 1), "horn")
            for tag, (name, surfs) in enumerate(faces.items(), start=1):
                gmsh.model.setPhysicalName(2, gmsh.model.addPhysicalGroup(2, surfs, tag), name)
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.option.setNumber("Mesh.MeshSizeMin", size / 2)
        gmsh.model.mesh.generate(3)
        gmsh.option.setNumber("Mesh.MshFileVersion", version)
        gmsh.option.setNumber("Mesh.Binary", int(binary))
        gmsh.write(str(path))
    finally:
        gmsh.finalize()
    return Path(path)


def _build_step(path: Path, *, radius: float = 0.02, length: float = 0.04, sphere: bool = False) -> Path:
    """A STEP cylinder horn (metres in the model, millimetres in the file) or a sphere."""
    import gmsh

    from weldsim_hpc.geometry.step_io import write_step

    gmsh.initialize()
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        if sphere:
            gmsh.model.occ.addSphere(0, 0, 0, radius)
        else:
            gmsh.model.occ.addCylinder(0, 0, 0, 0, 0, length, radius)
        gmsh.model.occ.synchronize()
        write_step(path)
    finally:
        gmsh.finalize()
    return Path(path)


@pytest.fixture(scope="session")
def step_builder():
    """The `_build_step(path, radius=, length=, sphere=)` function (needs gmsh)."""
    return _build_step


@pytest.fixture(scope="session")
def msh_builder():
    """The `_build_msh(path, shape, **options)` function (needs gmsh)."""
    return _build_msh
