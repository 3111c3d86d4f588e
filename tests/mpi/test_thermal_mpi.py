"""fenicsx thermal solver: the load paths and errors beyond the validation cases, 1 and 2 ranks.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi \
         tests/mpi/test_thermal_mpi.py      (and with -n 1)
Meshes are built with gmsh on rank 0 only, written as mesh dirs and read collectively.
Every assertion is collective (verdicts gathered, every rank asserts the same).
The slab, fin and weld energy-balance validation runs on both backends in
tests/mpi/validation/test_thermal.py.

1. steady heat source with P2: nodally exact, P1 output, heat input, per-volume peak
2. time-dependent flux (Crank–Nicolson energy exact) and time-dependent temperature
3. bad input fails on every rank with the message
"""

from __future__ import annotations

import numpy as np
import pytest

# tests/conftest.py leaves tests/mpi uncollected outside an MPI launch (mpi4py import).
import dolfinx  # noqa: F401
from mpi4py import MPI

from weldsim_hpc import mesh as M
from weldsim_hpc.case import CaseSpec
from weldsim_hpc.materials import material_from_dict
from .collective import assert_all, on_root  # noqa: E402

COMM = MPI.COMM_WORLD


def material(k: float, rho: float, cp: float, mid: str = "test_solid"):
    """A made-up isotropic solid with the thermal properties pinned (SI)."""
    return material_from_dict({
        "id": mid, "name": mid, "density_kg_m3": rho, "youngs_modulus_Pa": 100e9,
        "poisson_ratio": 0.3, "conductivity_W_mK": k, "specific_heat_J_kgK": cp,
        "expansion_1_K": 1e-5, "yield_strength_Pa": 1e8, "fatigue_strength_Pa": 1e8,
        "fatigue_cycles": 1e9, "loss_factor": 1e-3, "solidus_K": 1500.0})


def box_mesh(tmp_path_factory, msh_builder, name: str, box, size: float):
    """A box 0..box along x, y, z; groups horn / input_face (z=0) / output_face / lateral."""
    def build():
        base = tmp_path_factory.mktemp(name)
        data = M.read_msh(msh_builder(base / f"{name}.msh", "box", box=box, size=size))
        return str(M.write_mesh_dir(data, base / "mesh"))

    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh

    return read_mesh(on_root(build), COMM)


def block_case(**fields) -> CaseSpec:
    base = {"name": "test", "geometry": {"kind": "block", "length_m": 0.01, "width_m": 0.001,
                                         "depth_m": 0.001},
            "materials": {"horn": "d2"}}
    return CaseSpec.model_validate({**base, **fields})


# --- the slab ------------------------------------------------------------------------
SLAB_L, SLAB_W = 0.01, 0.001          # m: slab 0 <= z <= L, thin cross-section
SLAB_MAT = material(100.0, 1000.0, 1000.0)   # α = 1e-4 m²/s, so Fo = α t / L² = t (s)
T0 = 300.0


@pytest.fixture(scope="module")
def slab(tmp_path_factory, msh_builder):
    return box_mesh(tmp_path_factory, msh_builder, "slab", (SLAB_W, SLAB_W, SLAB_L), SLAB_L / 60)


# --- the other load paths -----------------------------------------------------------
@pytest.mark.mpi
def test_steady_source_p2_is_nodally_exact(slab):
    """-k T'' = Q with T = T0 at z = 0 and z = L: T = T0 + Q z (L − z) / 2k, which P2 holds
    exactly (1-D quadratic), so the error is the solver's; the P1 output interpolates it."""
    from weldsim_hpc.backends.fenicsx import compat
    from weldsim_hpc.backends.fenicsx.thermal import solve_thermal

    Q = 2e7
    case = block_case(
        analysis="thermal_steady", element_order=2, solver={"rtol": 1e-12},
        loads=[{"type": "heat_source", "volume": "horn", "value": Q}],
        boundary_conditions=[{"type": "temperature", "boundary": b, "value": T0}
                             for b in ("input_face", "output_face")])
    res = solve_thermal(slab, COMM, case, {"horn": SLAB_MAT})
    z = np.array([0.13, 0.5, 0.77]) * SLAB_L
    pts = np.stack([np.full_like(z, 0.3 * SLAB_W), np.full_like(z, 0.6 * SLAB_W), z], axis=1)
    exact = T0 + Q * z * (SLAB_L - z) / (2 * SLAB_MAT.conductivity_W_mK)
    fe = compat.evaluate_at_points(res.temperature, pts, COMM)
    p1 = compat.evaluate_at_points(res.temperature_p1, pts, COMM)
    err = np.abs(fe - exact).max() / (exact.max() - T0)
    assert_all(err < 1e-6, f"P2 {fe} vs exact {exact}")
    assert_all(np.abs(p1 - exact).max() / (exact.max() - T0) < 0.02, f"P1 output {p1}")
    assert_all(res.temperature_p1 is not res.temperature, "no separate P1 output")
    total = Q * SLAB_L * SLAB_W**2
    assert_all(abs(res.heat_input_W / total - 1) < 1e-12, f"heat input {res.heat_input_W} W vs {total}")
    assert_all(res.T_max_K[0] == pytest.approx(res.T_max_by_volume_K["horn"]), f"{res.T_max_K}")


@pytest.mark.mpi
def test_time_dependent_flux_and_temperature(slab):
    """Insulated slab heated by q = a·t on input_face (W/m²): Crank–Nicolson puts in
    exactly a·A·t²/2 (trapezoid of a linear rate) and the heat content follows it; a
    time-dependent temperature on output_face holds its value at every step."""
    from weldsim_hpc.backends.fenicsx import compat
    from weldsim_hpc.backends.fenicsx.thermal import solve_thermal

    a = 1e6
    case = block_case(
        analysis="thermal_transient", time={"end_s": 0.05, "dt_s": 0.01, "theta": 0.5},
        thermal={"T_initial_K": T0}, solver={"rtol": 1e-12, "atol": 1e-30},
        boundary_conditions=[{"type": "heat_flux", "boundary": "input_face", "value": f"{a} * t"}])
    res = solve_thermal(slab, COMM, case, {"horn": SLAB_MAT})
    exact = a * SLAB_W**2 * res.times_s**2 / 2
    assert_all(np.allclose(res.energy_in_J, exact, rtol=1e-9, atol=0), f"{res.energy_in_J} vs {exact}")
    assert_all(np.allclose(res.heat_content_J, exact, rtol=1e-8, atol=1e-15), f"{res.heat_content_J}")

    seen = []
    case = block_case(
        analysis="thermal_transient", time={"end_s": 0.05, "dt_s": 0.01},
        thermal={"T_initial_K": T0},
        boundary_conditions=[{"type": "temperature", "boundary": "output_face",
                              "value": f"{T0} + 1000 * t * (1 + x / {SLAB_W})"}])
    corner = np.array([[SLAB_W, SLAB_W / 2, SLAB_L]])
    solve_thermal(slab, COMM, case, {"horn": SLAB_MAT},
                  on_step=lambda k, t, T: seen.append((t, compat.evaluate_at_points(T, corner, COMM)[0])))
    errs = [abs(v - (T0 + 2000 * t)) for t, v in seen]
    assert_all(len(seen) == 5 and max(errs) < 1e-9, f"{seen}")


@pytest.mark.mpi
def test_bad_input_fails_on_every_rank(slab):
    from weldsim_hpc.backends.fenicsx.thermal import solve_thermal
    from weldsim_hpc.errors import WeldSimError

    cases = {
        "no group": (block_case(analysis="thermal_steady", boundary_conditions=[
            {"type": "temperature", "boundary": "nowhere", "value": 300.0}]), {"horn": SLAB_MAT},
            "no surface group 'nowhere'"),
        "floating": (block_case(analysis="thermal_steady", boundary_conditions=[
            {"type": "heat_flux", "boundary": "lateral", "value": 1.0}]), {"horn": SLAB_MAT},
            "needs a temperature or convection"),
        "no material": (block_case(analysis="thermal_steady", boundary_conditions=[
            {"type": "temperature", "boundary": "input_face", "value": 300.0}]), {"anvil": SLAB_MAT},
            "no material for volume group 'horn'"),
    }
    for label, (case, mats, needle) in cases.items():
        try:
            solve_thermal(slab, COMM, case, mats)
            message = ""
        except WeldSimError as exc:
            message = str(exc)
        assert_all(needle in message, f"{label}: got {message!r}")
