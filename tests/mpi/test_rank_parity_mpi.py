"""The same case on all ranks and on one rank gives the same metrics (1e-6 relative).

Inside one `mpirun -n 2` launch: the mesh is read once on COMM_WORLD (2 ranks) and once
on COMM_SELF by rank 0 (1 rank); both solve the example thermal and coupled cases at their
`ci` preset, and rank 0 compares. (tests/test_run_entry.py checks the same through whole
runs launched on 1 and 2 ranks.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

import dolfinx  # noqa: F401  (tests/conftest.py collects tests/mpi only under mpirun)
from mpi4py import MPI

from weldsim_hpc.backends.fenicsx import compat
from weldsim_hpc.backends.fenicsx.coupled import solve_coupled
from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh
from weldsim_hpc.backends.fenicsx.thermal import solve_thermal
from weldsim_hpc.case_checks import resolve_case_materials
from weldsim_hpc.case_io import load_case
from weldsim_hpc.pipeline import mesh_case
from .collective import assert_all  # noqa: E402

COMM = MPI.COMM_WORLD
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def prepared(name: str, tmp_path_factory):
    """The example's ci case, its materials, and its mesh dir (meshed on rank 0)."""
    case = load_case(EXAMPLES / name, preset="ci")
    materials, problems = resolve_case_materials(case)
    assert not problems
    mesh_dir = None
    if COMM.rank == 0:
        _, mesh_dir = mesh_case(case, tmp_path_factory.mktemp(name.split(".")[0]))
    return case, materials, str(COMM.bcast(mesh_dir, root=0))


def thermal_metrics(case, materials, mesh_dir, comm) -> dict[str, float]:
    fmesh = read_mesh(mesh_dir, comm)
    result = solve_thermal(fmesh, comm, case, materials)
    probe = compat.evaluate_at_points(result.temperature, [case.probes[0].point], comm)[0]
    return {"T_max_K": result.T_max_K.max(), "energy_in_J": result.energy_in_J[-1],
            "heat_content_J": result.heat_content_J[-1], "probe_K": probe}


def coupled_metrics(case, materials, mesh_dir, comm) -> dict[str, float]:
    fmesh = read_mesh(mesh_dir, comm)
    result = solve_coupled(fmesh, comm, case, materials)
    s = result.structural
    return {"max_von_mises_Pa": result.max_von_mises_Pa, "max_displacement_m": s.max_displacement_m,
            "uz_face_m": compat.evaluate_at_points(s.displacement.sub(2).collapse(),
                                                   [case.probes[0].point], comm)[0],
            "T_max_K": result.thermal.T_max_K.max()}


def compare(solve, case, materials, mesh_dir) -> None:
    everywhere = solve(case, materials, mesh_dir, COMM)
    alone = solve(case, materials, mesh_dir, MPI.COMM_SELF) if COMM.rank == 0 else None
    alone = COMM.bcast(alone, root=0)
    for name, value in everywhere.items():
        assert_all(value == pytest.approx(alone[name], rel=1e-6, abs=1e-12),
                   f"{name}: {COMM.size} ranks {value!r}, 1 rank {alone[name]!r}")


@pytest.mark.mpi
def test_thermal_example_parity(tmp_path_factory):
    compare(thermal_metrics, *prepared("tab_weld_cu_al_transient.toml", tmp_path_factory))


@pytest.mark.mpi
def test_coupled_example_parity(tmp_path_factory):
    compare(coupled_metrics, *prepared("horn_coupled.toml", tmp_path_factory))
