"""Thermal validation on both backends: the same mesh, case, closed form and tolerance.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi \
         tests/mpi/validation/test_thermal.py      (fenicsx on both ranks, scipy on rank 0)
Meshes are built with gmsh on rank 0 and written as mesh directories that both backends
read; every assertion is collective.

1. slab: transient conduction vs the Fourier series at Fo = 0.05 and 0.5 (< 1 % of the rise)
2. fin: steady fin with tip convection (Bi ≤ 0.01) vs 1-D fin theory, tip temperature and
   heat rate (< 1 %)
3. weld energy balance on the conforming tab stack: ∫ρc(T−T0)dx = q·A_weld·t_weld to 1e-6,
   backward Euler and Crank–Nicolson, CG + AMG on both backends
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import dolfinx  # noqa: F401  (tests/conftest.py collects tests/mpi only under mpirun)

from weldsim_hpc.case import CaseSpec
from weldsim_hpc.materials import material_from_dict, resolve_material

from ..collective import assert_all
from ._backends import report
from ._meshes import mesh_dir


def material(k: float, rho: float, cp: float, mid: str = "test_solid"):
    """A made-up isotropic solid with the thermal properties pinned (SI)."""
    return material_from_dict({
        "id": mid, "name": mid, "density_kg_m3": rho, "youngs_modulus_Pa": 100e9,
        "poisson_ratio": 0.3, "conductivity_W_mK": k, "specific_heat_J_kgK": cp,
        "expansion_1_K": 1e-5, "yield_strength_Pa": 1e8, "fatigue_strength_Pa": 1e8,
        "fatigue_cycles": 1e9, "loss_factor": 1e-3, "solidus_K": 1500.0})


def block_case(**fields) -> CaseSpec:
    base = {"name": "test", "geometry": {"kind": "block", "length_m": 0.01, "width_m": 0.001,
                                         "depth_m": 0.001},
            "materials": {"horn": "d2"}}
    return CaseSpec.model_validate({**base, **fields})


def box_dir(tmp_path_factory, msh_builder, name: str, box, size: float) -> str:
    """A box 0..box; groups horn / input_face (z = 0) / output_face / lateral."""
    return mesh_dir(tmp_path_factory, name, lambda base: msh_builder(base / f"{name}.msh", "box", box=box, size=size))


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
    return box_dir(tmp_path_factory, msh_builder, "slab", (SLAB_W, SLAB_W, SLAB_L), SLAB_L / 60)


@pytest.mark.mpi
def test_transient_slab_matches_series(backend, slab):
    case = block_case(
        analysis="thermal_transient",
        time={"end_s": 0.5, "dt_s": 0.001, "theta": 1.0},
        thermal={"T_initial_K": T0},
        solver={"rtol": 1e-10, "atol": 1e-14},
        boundary_conditions=[{"type": "temperature", "boundary": "input_face", "value": T1}])
    z = np.array([0.1, 0.25, 0.5, 1.0]) * SLAB_L
    points = np.stack([np.full_like(z, SLAB_W / 2), np.full_like(z, SLAB_W / 2), z], axis=1)

    def measure():
        snapshots, progress = {}, []

        def on_step(k, t, probe):
            for fo in (0.05, 0.5):
                if abs(t - fo) < 1e-9:
                    snapshots[fo] = probe(points)

        res = backend.solve_thermal(backend.mesh(slab), case, {"horn": SLAB_MAT}, on_step=on_step,
                                    on_progress=lambda *a: progress.append(a))
        return {"snapshots": snapshots, "n_times": len(res.times_s), "t_end": float(res.times_s[-1]),
                "last_percent": progress[-1][2] if progress else None}

    m = backend.measure(measure)
    snapshots = m["snapshots"]
    assert_all(sorted(snapshots) == [0.05, 0.5], f"snapshots at {sorted(snapshots)}")
    assert_all(m["n_times"] == 501 and m["t_end"] == 0.5, f"{m['n_times']} times, last {m['t_end']}")
    assert_all(m["last_percent"] == 100.0, "no final progress call")
    for fo, values in snapshots.items():
        exact = slab_series(z, fo)
        rise = exact - T0
        keep = rise > 0.05 * (T1 - T0)   # compare where the rise is at least 5% of ΔT
        err = np.abs(values - exact)[keep] / rise[keep]
        assert_all(keep.sum() >= 2, f"Fo={fo}: only {keep.sum()} points with a rise")
        assert_all(err.max() < 0.01, f"Fo={fo}: FE {values} vs series {exact}: rel. err {err}")
        report(backend, f"slab Fo={fo}: z/L {z[keep] / SLAB_L}, error / local rise {err}")


# --- 2. steady fin ------------------------------------------------------------------
FIN_T, FIN_L = 0.002, 0.016          # square 2 × 2 mm rod, 16 mm long
FIN_K, FIN_H = 50.0, 100.0           # Bi = h t / k = 0.004
T_BASE, T_INF = 400.0, 300.0


@pytest.fixture(scope="module")
def fin(tmp_path_factory, msh_builder):
    return box_dir(tmp_path_factory, msh_builder, "fin", (FIN_T, FIN_T, FIN_L), FIN_T / 4)


@pytest.mark.mpi
def test_steady_fin_matches_1d_theory(backend, fin):
    assert FIN_H * FIN_T / FIN_K <= 0.01
    cooled = ("lateral", "output_face")
    case = block_case(
        analysis="thermal_steady", solver={"rtol": 1e-10},
        boundary_conditions=[
            {"type": "temperature", "boundary": "input_face", "value": T_BASE},
            *({"type": "convection", "boundary": b, "h_W_m2K": FIN_H, "T_inf_K": T_INF} for b in cooled)])

    def measure():
        mesh = backend.mesh(fin)
        res = backend.solve_thermal(mesh, case, {"horn": material(FIN_K, 7800.0, 500.0)})
        return {"tip": float(backend.temperature_at(res, [[FIN_T / 2, FIN_T / 2, FIN_L]])[0]),
                "Q": backend.convected_W(mesh, res, cooled, FIN_H, T_INF),
                "energy_in": res.energy_in_J.tolist(), "n_times": len(res.times_s)}

    m = backend.measure(measure)
    # 1-D fin with a convective tip
    P, A = 4 * FIN_T, FIN_T**2
    mm = math.sqrt(FIN_H * P / (FIN_K * A))
    r = FIN_H / (mm * FIN_K)
    mL = mm * FIN_L
    tip_ratio = 1 / (math.cosh(mL) + r * math.sinh(mL))
    Q_exact = math.sqrt(FIN_H * P * FIN_K * A) * (T_BASE - T_INF) * \
        (math.sinh(mL) + r * math.cosh(mL)) / (math.cosh(mL) + r * math.sinh(mL))
    tip_err = abs((m["tip"] - T_INF) / (T_BASE - T_INF) / tip_ratio - 1)
    Q_err = abs(m["Q"] / Q_exact - 1)
    report(backend, f"fin mL={mL:.3f}: tip excess ratio {(m['tip'] - T_INF) / (T_BASE - T_INF):.5f} vs "
           f"{tip_ratio:.5f} (err {tip_err:.2e}); Q {m['Q']:.5f} W vs {Q_exact:.5f} W (err {Q_err:.2e})")
    assert_all(tip_err < 0.01, f"tip excess ratio error {tip_err:.3e}")
    assert_all(Q_err < 0.01, f"heat rate error {Q_err:.3e}")
    assert_all(m["energy_in"] == [0.0] and m["n_times"] == 1, "steady bookkeeping")


# --- 3. weld heating energy balance --------------------------------------------------
STACK = dict(anvil_width_m=8e-3, anvil_depth_m=6e-3, anvil_height_m=2e-3, tab_width_m=6e-3,
             tab_depth_m=5e-3, tab_thickness_m=0.3e-3, foil_width_m=5e-3, foil_depth_m=4e-3,
             n_foils=4, foil_thickness_m=0.1e-3, horn_tip_width_m=4e-3, horn_tip_depth_m=3e-3,
             horn_tip_height_m=1e-3)
WELD = {"power_W": 1000.0, "heat_fraction": 0.5, "weld_time_s": 0.2}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    def build(base):
        import gmsh

        from weldsim_hpc.geometry import TabStackParams
        from weldsim_hpc.geometry.meshing import mesh_built

        gmsh.initialize(readConfigFiles=False)
        try:
            gmsh.option.setNumber("General.Terminal", 0)
            mesh_built(TabStackParams(**STACK).build(), base / "stack.msh", size_m=1.5e-3,
                       refine_size_m=0.75e-3, optimize=False)
        finally:
            gmsh.finalize()
        return base / "stack.msh"

    return mesh_dir(tmp_path_factory, "stack", build)


@pytest.mark.mpi
@pytest.mark.parametrize("theta", [1.0, 0.5])
def test_weld_heating_energy_balance(backend, stack, theta, monkeypatch):
    """The weld interface is interior (two cells per facet; on 2 fenicsx ranks it crosses the
    partition). Solved with CG + AMG on both backends (scipy's direct path switched off)."""
    backend.iterative_only(monkeypatch)
    case = CaseSpec.model_validate({
        "name": "stack", "analysis": "thermal_transient", "geometry": {"kind": "tab_stack", **STACK},
        "materials": {"anvil": "d2", "tab": "cu_c110", "foil_stack": "al1060", "horn_tip": "d2"},
        "weld": WELD, "time": {"end_s": 0.3, "dt_s": 0.03, "theta": theta},  # default rtol 1e-8
        "boundary_conditions": [{"type": "weld_interface_heating", "boundary": "weld_interface"}]})
    mats = {k: resolve_material(v) for k, v in case.materials.items()}
    T_init = case.thermal.T_initial_K

    def measure():
        mesh = backend.mesh(stack)
        res = backend.solve_thermal(mesh, case, mats)
        metrics = res.metrics(mats)
        return {"interface": backend.interface(mesh, "weld_interface"), "times": res.times_s,
                "weld_area": res.weld_area_m2, "q": res.weld_flux_W_m2, "content": res.heat_content_J,
                "energy_in": res.energy_in_J, "T_max": res.T_max_K, "recomputed": backend.heat_content(res, T_init),
                "n_solves": len(res.ksp_iterations), "metrics": (metrics.energy_in_J, metrics.T_max_over_solidus,
                                                                 metrics.T_max_K)}

    m = backend.measure(measure)
    face = m["interface"]
    A_weld = face["area"]
    assert_all(face["interior"], "a weld_interface facet with one cell")
    assert_all(len(face["per_process"]) == 1 or min(face["per_process"]) > 0,
               f"weld_interface facets per process: {face['per_process']}")
    expected = WELD["heat_fraction"] * WELD["power_W"] * WELD["weld_time_s"]   # q·A_weld·t_weld
    times = m["times"]
    i_end = int(np.argmin(np.abs(times - WELD["weld_time_s"])))
    errors = {
        "area": abs(m["weld_area"] / A_weld - 1),
        "area_nominal": abs(A_weld / (STACK["foil_width_m"] * STACK["foil_depth_m"]) - 1),
        "q": abs(m["q"] * A_weld * WELD["weld_time_s"] / expected - 1),
        "at_weld_end": abs(m["content"][i_end] / expected - 1),
        "at_end": abs(m["content"][-1] / expected - 1),
        "recomputed": abs(m["recomputed"] / expected - 1),
        "energy_in": abs(m["energy_in"][-1] / expected - 1),
    }
    T_max = m["T_max"]
    report(backend, f"stack θ={theta}: T_max {T_max.max():.2f} K, A_weld {A_weld * 1e6:.4f} mm², "
           f"{m['n_solves']} solves, rel. errors {errors}")
    assert_all(times[i_end] == WELD["weld_time_s"], f"weld end {times[i_end]} not on grid")
    assert_all(max(errors.values()) < 1e-6, f"{errors}")
    # the weld is the planar foil footprint: its measured area is the nominal one to round-off
    assert_all(errors["area"] < 1e-12 and errors["area_nominal"] < 1e-12, f"{errors}")
    # heating stops at the weld end: the peak falls afterwards, the content stays
    assert_all(T_max[i_end] > T_max[-1] > T_init, f"{T_max}")
    assert_all(m["n_solves"] == len(times) - 1 >= 10, f"{m['n_solves']} solves for {len(times) - 1} steps")
    energy, over_solidus, peak = m["metrics"]
    assert_all(energy == pytest.approx(expected, rel=1e-6), f"metrics energy_in_J {energy}")
    assert_all(0 < over_solidus < 1 and peak == pytest.approx(T_max.max()), f"{over_solidus}, {peak}")
