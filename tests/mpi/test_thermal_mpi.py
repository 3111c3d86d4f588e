"""fenicsx thermal solver vs closed forms, on 1 and 2 ranks.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi \
         tests/mpi/test_thermal_mpi.py      (and with -n 1)
Meshes are built with gmsh on rank 0 only, written as mesh dirs and read collectively.
Every assertion is collective (verdicts gathered, every rank asserts the same).

1. transient slab conduction vs the Fourier series at Fo = 0.05 and 0.5 (< 1% of the rise)
2. steady fin with tip convection (Bi ≤ 0.01) vs 1-D fin theory (< 1%)
3. weld heating energy balance on a conforming tab stack: ∫ρc(T−T0)dx = q·A_weld·t_weld
   (1e-6 relative), backward Euler and Crank–Nicolson
"""

from __future__ import annotations

import math

import numpy as np
import pytest

# tests/conftest.py leaves tests/mpi uncollected outside an MPI launch (mpi4py import).
import dolfinx  # noqa: F401
from mpi4py import MPI

from weldsim_hpc import mesh as M
from weldsim_hpc.case import CaseSpec
from weldsim_hpc.materials import material_from_dict, resolve_material
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


# --- 1. transient slab ---------------------------------------------------------------
SLAB_L, SLAB_W = 0.01, 0.001          # m: slab 0 <= z <= L, thin cross-section
SLAB_MAT = material(100.0, 1000.0, 1000.0)   # α = 1e-4 m²/s, so Fo = α t / L² = t (s)
T0, T1 = 300.0, 400.0


def slab_series(z: np.ndarray, fo: float, terms: int = 200) -> np.ndarray:
    """T(z, Fo) for T(0) = T1, insulated at z = L, initially T0."""
    n = np.arange(terms)[:, None]
    lam = (2 * n + 1) * np.pi / 2
    theta = (4 / ((2 * n + 1) * np.pi) * np.sin(lam * z / SLAB_L) * np.exp(-lam**2 * fo)).sum(axis=0)
    return T1 + (T0 - T1) * theta


@pytest.fixture(scope="module")
def slab(tmp_path_factory, msh_builder):
    return box_mesh(tmp_path_factory, msh_builder, "slab", (SLAB_W, SLAB_W, SLAB_L), SLAB_L / 60)


@pytest.mark.mpi
def test_transient_slab_matches_series(slab):
    from weldsim_hpc.backends.fenicsx import compat
    from weldsim_hpc.backends.fenicsx.thermal import solve_thermal

    case = block_case(
        analysis="thermal_transient",
        time={"end_s": 0.5, "dt_s": 0.001, "theta": 1.0},
        thermal={"T_initial_K": T0},
        solver={"rtol": 1e-10, "atol": 1e-14},
        boundary_conditions=[{"type": "temperature", "boundary": "input_face", "value": T1}])
    z = np.array([0.1, 0.25, 0.5, 1.0]) * SLAB_L
    points = np.stack([np.full_like(z, SLAB_W / 2), np.full_like(z, SLAB_W / 2), z], axis=1)
    snapshots = {}
    progress = []

    def on_step(k, t, T):
        for fo in (0.05, 0.5):
            if abs(t - fo) < 1e-9:
                snapshots[fo] = compat.evaluate_at_points(T, points, COMM)

    res = solve_thermal(slab, COMM, case, {"horn": SLAB_MAT}, on_step=on_step,
                        on_progress=lambda *a: progress.append(a))
    assert_all(sorted(snapshots) == [0.05, 0.5], f"snapshots at {sorted(snapshots)}")
    assert_all(len(res.times_s) == 501 and res.times_s[-1] == 0.5, f"{len(res.times_s)} times")
    assert_all(progress and progress[-1][2] == 100.0, "no final progress call")
    for fo, values in snapshots.items():
        exact = slab_series(z, fo)
        rise = exact - T0
        keep = rise > 0.05 * (T1 - T0)   # compare where the rise is at least 5% of ΔT
        err = np.abs(values - exact)[keep] / rise[keep]
        assert_all(keep.sum() >= 2, f"Fo={fo}: only {keep.sum()} points with a rise")
        assert_all(err.max() < 0.01, f"Fo={fo}: FE {values} vs series {exact}: rel. err {err}")
        if COMM.rank == 0:
            print(f"\nslab Fo={fo}: z/L {z[keep] / SLAB_L}, error / local rise {err}")


# --- 2. steady fin ------------------------------------------------------------------
FIN_T, FIN_L = 0.002, 0.016          # square 2 × 2 mm rod, 16 mm long
FIN_K, FIN_H = 50.0, 100.0           # Bi = h t / k = 0.004
T_BASE, T_INF = 400.0, 300.0


@pytest.fixture(scope="module")
def fin(tmp_path_factory, msh_builder):
    return box_mesh(tmp_path_factory, msh_builder, "fin", (FIN_T, FIN_T, FIN_L), FIN_T / 4)


@pytest.mark.mpi
def test_steady_fin_matches_1d_theory(fin):
    import ufl
    from dolfinx import fem

    from weldsim_hpc.backends.fenicsx import compat
    from weldsim_hpc.backends.fenicsx.thermal import solve_thermal

    assert FIN_H * FIN_T / FIN_K <= 0.01
    case = block_case(
        analysis="thermal_steady", solver={"rtol": 1e-10},
        boundary_conditions=[
            {"type": "temperature", "boundary": "input_face", "value": T_BASE},
            {"type": "convection", "boundary": "lateral", "h_W_m2K": FIN_H, "T_inf_K": T_INF},
            {"type": "convection", "boundary": "output_face", "h_W_m2K": FIN_H, "T_inf_K": T_INF}])
    res = solve_thermal(fin, COMM, case, {"horn": material(FIN_K, 7800.0, 500.0)})
    # 1-D fin with a convective tip
    P, A = 4 * FIN_T, FIN_T**2
    m = math.sqrt(FIN_H * P / (FIN_K * A))
    r = FIN_H / (m * FIN_K)
    mL = m * FIN_L
    tip_ratio = 1 / (math.cosh(mL) + r * math.sinh(mL))
    Q_exact = math.sqrt(FIN_H * P * FIN_K * A) * (T_BASE - T_INF) * \
        (math.sinh(mL) + r * math.cosh(mL)) / (math.cosh(mL) + r * math.sinh(mL))
    tip = compat.evaluate_at_points(res.temperature, [[FIN_T / 2, FIN_T / 2, FIN_L]], COMM)[0]
    ds = ufl.Measure("ds", domain=fin.mesh, subdomain_data=fin.facet_tags)
    cooled = ds(fin.groups["lateral"][1]) + ds(fin.groups["output_face"][1])
    conv = (res.temperature - T_INF) * FIN_H * cooled
    Q = COMM.allreduce(fem.assemble_scalar(fem.form(conv)))
    tip_err = abs((tip - T_INF) / (T_BASE - T_INF) / tip_ratio - 1)
    Q_err = abs(Q / Q_exact - 1)
    if COMM.rank == 0:
        print(f"\nfin mL={mL:.3f}: tip excess ratio {(tip - T_INF) / (T_BASE - T_INF):.5f} vs "
              f"{tip_ratio:.5f} (err {tip_err:.2e}); Q {Q:.5f} W vs {Q_exact:.5f} W (err {Q_err:.2e})")
    assert_all(tip_err < 0.01, f"tip excess ratio error {tip_err:.3e}")
    assert_all(Q_err < 0.01, f"heat rate error {Q_err:.3e}")
    assert_all(res.energy_in_J.tolist() == [0.0] and len(res.times_s) == 1, "steady bookkeeping")


# --- 3. weld heating energy balance --------------------------------------------------
STACK = dict(anvil_width_m=8e-3, anvil_depth_m=6e-3, anvil_height_m=2e-3, tab_width_m=6e-3,
             tab_depth_m=5e-3, tab_thickness_m=0.3e-3, foil_width_m=5e-3, foil_depth_m=4e-3,
             n_foils=4, foil_thickness_m=0.1e-3, horn_tip_width_m=4e-3, horn_tip_depth_m=3e-3,
             horn_tip_height_m=1e-3)
WELD = {"power_W": 1000.0, "heat_fraction": 0.5, "weld_time_s": 0.2}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    def build():
        import gmsh

        from weldsim_hpc.geometry import TabStackParams
        from weldsim_hpc.geometry.meshing import mesh_built

        base = tmp_path_factory.mktemp("stack")
        gmsh.initialize(readConfigFiles=False)
        try:
            gmsh.option.setNumber("General.Terminal", 0)
            built = TabStackParams(**STACK).build()
            mesh_built(built, base / "stack.msh", size_m=1.5e-3, refine_size_m=0.75e-3, optimize=False)
        finally:
            gmsh.finalize()
        return str(M.write_mesh_dir(M.read_msh(base / "stack.msh"), base / "mesh"))

    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh

    return read_mesh(on_root(build), COMM)


@pytest.mark.mpi
@pytest.mark.parametrize("theta", [1.0, 0.5])
def test_weld_heating_energy_balance(stack, theta):
    from weldsim_hpc.backends.fenicsx.mesh_io import owned_facet_area
    from weldsim_hpc.backends.fenicsx.thermal import heat_content_J, solve_thermal

    case = CaseSpec.model_validate({
        "name": "stack", "analysis": "thermal_transient", "geometry": {"kind": "tab_stack", **STACK},
        "materials": {"anvil": "d2", "tab": "cu_c110", "foil_stack": "al1060", "horn_tip": "d2"},
        "weld": WELD, "time": {"end_s": 0.3, "dt_s": 0.03, "theta": theta},  # default rtol 1e-8
        "boundary_conditions": [{"type": "weld_interface_heating", "boundary": "weld_interface"}]})
    mats = {k: resolve_material(v) for k, v in case.materials.items()}
    res = solve_thermal(stack, COMM, case, mats)
    # the weld interface is interior (two cells per facet); on 2 ranks it crosses the partition
    tag = stack.groups["weld_interface"][1]
    tdim = stack.mesh.topology.dim
    f2c = stack.mesh.topology.connectivity(tdim - 1, tdim)
    n_owned = stack.mesh.topology.index_map(tdim - 1).size_local
    facets = stack.facet_tags.indices[stack.facet_tags.values == tag]
    facets = facets[facets < n_owned]   # a ghost facet may miss its far cell; owned ones may not
    assert_all(all(len(f2c.links(f)) == 2 for f in facets), "owned weld_interface facet with one cell")
    owners = COMM.allgather(len(facets))
    assert_all(COMM.size == 1 or min(owners) > 0, f"weld_interface facets owned per rank: {owners}")
    A_weld = COMM.allreduce(owned_facet_area(stack.mesh, stack.facet_tags, stack.groups["weld_interface"][1]))
    expected = WELD["heat_fraction"] * WELD["power_W"] * WELD["weld_time_s"]   # q·A_weld·t_weld
    i_end = int(np.argmin(np.abs(res.times_s - WELD["weld_time_s"])))
    gained = heat_content_J(res.temperature, res.rho_c, case.thermal.T_initial_K)
    errors = {
        "area": abs(res.weld_area_m2 / A_weld - 1),
        "area_nominal": abs(A_weld / (STACK["foil_width_m"] * STACK["foil_depth_m"]) - 1),
        "q": abs(res.weld_flux_W_m2 * A_weld * WELD["weld_time_s"] / expected - 1),
        "at_weld_end": abs(res.heat_content_J[i_end] / expected - 1),
        "at_end": abs(res.heat_content_J[-1] / expected - 1),
        "recomputed": abs(gained / expected - 1),
        "energy_in": abs(res.energy_in_J[-1] / expected - 1),
    }
    if COMM.rank == 0:
        print(f"\nstack θ={theta}: {COMM.size} ranks, T_max {res.T_max_K.max():.2f} K, "
              f"A_weld {A_weld * 1e6:.4f} mm², rel. errors {errors}")
    assert_all(res.times_s[i_end] == WELD["weld_time_s"], f"weld end {res.times_s[i_end]} not on grid")
    assert_all(max(errors.values()) < 1e-6, f"{errors}")
    # heating stops at the weld end: the peak falls afterwards, the content stays
    assert_all(res.T_max_K[i_end] > res.T_max_K[-1] > case.thermal.T_initial_K, f"{res.T_max_K}")
    metrics = res.metrics(mats)
    assert_all(metrics.energy_in_J == pytest.approx(expected, rel=1e-6), f"{metrics}")
    assert_all(0 < metrics.T_max_over_solidus < 1 and metrics.T_max_K == pytest.approx(res.T_max_K.max()),
               f"{metrics}")


# --- 4. the other load paths -----------------------------------------------------------
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
