"""fenicsx harmonic analysis: the same gains on all ranks and on one; the cycle-peak formula.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi \
         tests/mpi/test_harmonic_mpi.py      (and with -n 1)
Ti-6Al-4V pinned (E = 113.8 GPa, ν = 0.342, ρ = 4430 kg/m³, η = 1e-4). Meshes come from the
project's horn builders (gmsh on rank 0), P2 elements; every assertion is collective. The
bar gain and stress, modal superposition vs direct solve and stepped-horn gain validation
runs on both backends in tests/mpi/validation/test_dynamics.py.

1. displacement-driven Ø10 × 126.71 mm bar: the same gains, uniformity and peak stress on
   all ranks and on one (COMM_SELF on rank 0) to 1e-6 relative
2. the closed-form peak over the cycle of |x_r cos t − x_i sin t|² = a fine phase sampling
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import dolfinx  # noqa: F401  (tests/conftest.py collects tests/mpi only under mpirun)
from mpi4py import MPI

from weldsim_hpc import mesh as M
from weldsim_hpc.backends.fenicsx import harmonic as H
from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh
from weldsim_hpc.backends.fenicsx.modal import solve_modal
from weldsim_hpc.case import CaseSpec
from weldsim_hpc.materials import material_from_dict
from .collective import assert_all, on_root  # noqa: E402

COMM = MPI.COMM_WORLD
E, NU, RHO, ETA = 113.8e9, 0.342, 4430.0, 1e-4
TI = material_from_dict({
    "id": "ti_pinned", "name": "Ti-6Al-4V (pinned)", "density_kg_m3": RHO, "youngs_modulus_Pa": E,
    "poisson_ratio": NU, "conductivity_W_mK": 6.7, "specific_heat_J_kgK": 526.0, "expansion_1_K": 8.6e-6,
    "yield_strength_Pa": 880e6, "fatigue_strength_Pa": 510e6, "fatigue_cycles": 1e7,
    "loss_factor": ETA, "solidus_K": 1877.0})
MATERIALS = {"horn": TI}
BAR = {"kind": "cylinder", "length_m": 0.12671, "diameter_m": 0.010}
U_OUT = 10e-6
SCALES = np.array([0.975, 1.0, 1.025])


def report(text: str) -> None:
    if COMM.rank == 0:
        print(f"\n[{COMM.size} rank(s)] {text}")


def make_case(geometry: dict, **harmonic) -> CaseSpec:
    return CaseSpec.model_validate({
        "name": "harmonic test", "analysis": "harmonic", "geometry": geometry, "materials": {"horn": "ti"},
        "solver": {"target_frequency_Hz": 20000.0, "modes_wanted": 8},
        "harmonic": {"loss_factor": ETA, "output_amplitude_0pk_m": U_OUT, **harmonic}})


def mesh_dir(tmp_path_factory, name: str, geometry: dict, size: float, segments: int) -> str:
    """Mesh a horn with the project's builder on rank 0; the mesh directory's path."""
    from weldsim_hpc.geometry import parse_geometry
    from weldsim_hpc.geometry.meshing import generate
    from weldsim_hpc.geometry.sizing import ResolvedSizes

    def build():
        base = tmp_path_factory.mktemp(name)
        files = generate(parse_geometry(geometry), ResolvedSizes(size, size, size, segments), base)
        return str(M.write_mesh_dir(M.read_msh(files.msh), base / "mesh"))
    return on_root(build)


def working_frequency(fmesh, comm, geometry) -> float:
    modal = solve_modal(fmesh, comm, make_case(geometry).model_copy(update={"analysis": "modal"}), MATERIALS)
    return float(modal.summary.f_working_Hz)


# --- the uniform bar ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def bar(tmp_path_factory):
    """(mesh dir, fmesh, f₁ 3-D, case over 0.975–1.025 f₁, HarmonicResult, seconds)."""
    path = mesh_dir(tmp_path_factory, "bar", BAR, 0.005, 16)   # coarse: only ranks vs one compared
    fmesh = read_mesh(path, COMM)
    f1 = working_frequency(fmesh, COMM, BAR)
    case = make_case(BAR, frequency_range_Hz=tuple(SCALES[[0, -1]] * f1), frequency_points=3)
    t0 = time.perf_counter()
    result = H.solve_harmonic(fmesh, COMM, case, MATERIALS, f_working_Hz=f1)
    return path, fmesh, f1, case, result, time.perf_counter() - t0


@pytest.mark.mpi
def test_same_gains_on_all_ranks_and_one(bar):
    path, _, f1, case, res, _ = bar
    alone = None
    if COMM.rank == 0:
        fmesh = read_mesh(path, MPI.COMM_SELF)
        r1 = H.solve_harmonic(fmesh, MPI.COMM_SELF, case, MATERIALS, f_working_Hz=f1)
        alone = (r1.curves.gain, r1.uniformity, r1.max_von_mises_Pa)
    alone = COMM.bcast(alone, root=0)
    report(f"bar: gains on {COMM.size} rank(s) {res.curves.gain} vs 1 rank {alone[0]}")
    assert_all(np.allclose(res.curves.gain, alone[0], rtol=1e-6, atol=0), f"{res.curves.gain} vs {alone[0]}")
    assert_all(res.uniformity == pytest.approx(alone[1], rel=1e-6), "uniformity")
    assert_all(res.max_von_mises_Pa == pytest.approx(alone[2], rel=1e-6), "peak stress")


@pytest.mark.mpi
def test_cycle_peak_closed_form_matches_phase_sampling():
    """max_t |x_r cos t − x_i sin t|² in closed form = a fine sampling of the phase."""
    rng = np.random.default_rng(7)
    xr, xi = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    t = np.linspace(0, 2 * np.pi, 3601)
    sampled = np.max(np.sum((xr[:, None] * np.cos(t)[:, None] - xi[:, None] * np.sin(t)[:, None]) ** 2, -1), 1)
    closed = H.cycle_peak_sq(np.sum(xr * xr, 1), np.sum(xi * xi, 1), np.sum(xr * xi, 1))
    assert_all(np.allclose(closed, sampled, rtol=1e-6), f"{closed[:3]} vs {sampled[:3]}")
