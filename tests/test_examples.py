"""Every example meshes at its `ci` preset into a small problem (≤ 30k degrees of freedom)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from weldsim_hpc.case_io import load_case
from weldsim_hpc.mesh import MeshData
from weldsim_hpc.pipeline import mesh_case

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))
CI_DOF_LIMIT = 30_000
FIELD_COMPONENTS = {  # unknowns per node: temperature, displacement, or both
    "thermal_steady": 1, "thermal_transient": 1, "static_structural": 3,
    "modal": 3, "harmonic": 3, "coupled_thermo_structural": 4,
}


def count_edges(mesh: MeshData) -> int:
    pairs = mesh.cells[:, [0, 0, 0, 1, 1, 2]], mesh.cells[:, [1, 2, 3, 2, 3, 3]]
    edges = np.sort(np.stack([pairs[0].ravel(), pairs[1].ravel()], axis=1), axis=1)
    return len(np.unique(edges, axis=0))


def degrees_of_freedom(mesh: MeshData, analysis: str, order: int) -> int:
    nodes = mesh.n_nodes + (count_edges(mesh) if order == 2 else 0)
    return FIELD_COMPONENTS[analysis] * nodes


def test_edge_count_of_one_tetrahedron():
    tet = MeshData(np.eye(4, 3), np.array([[0, 1, 2, 3]]), np.array([1]), np.zeros((0, 3), int),
                   np.zeros(0, int), {"horn": (3, 1)})
    assert count_edges(tet) == 6
    assert degrees_of_freedom(tet, "modal", 2) == 3 * 10


@pytest.mark.gmsh
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_ci_preset_meshes_small(path, tmp_path):
    case = load_case(path, preset="ci")
    mesh, mesh_dir = mesh_case(case, tmp_path)
    dofs = degrees_of_freedom(mesh, case.analysis, case.effective_element_order)
    assert 1_000 < dofs <= CI_DOF_LIMIT, dofs
    assert (mesh_dir / "mesh.xdmf").is_file() and (mesh_dir / "groups.json").is_file()
    names = set(mesh.groups)
    for bc in case.boundary_conditions:
        assert bc.boundary in names
