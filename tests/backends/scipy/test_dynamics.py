"""scipy backend modal and harmonic analyses vs closed forms (plain pytest, no dolfinx).

Ti-6Al-4V pinned: E = 113.8 GPa, ν = 0.342, ρ = 4430 kg/m³, η = 1e-4. Meshes from the
project's horn builders (gmsh, in this process), quadratic tetrahedra.

1. free-free Ø10 × 126.71 mm bar: first longitudinal within 1 % of c/(2L), first torsional
   within 0.2 % of c_T/(2L), classified so; the six rigid modes deflated, none listed;
   shapes mass-normalised; clamped at input_face: no deflation, quarter-wave c/(4L)
2. the same bar displacement-driven: gain 1/|cos kL| within 0.5 % at 0.975, 1.0, 1.025 f₁;
   nodal peak stress E·U·π/L within 2 %; modal superposition = a direct complex solve of
   K(1 + iη) − ω²M within 0.5 %
3. stepped Ø20/Ø10 horn through run_harmonic: gain within 2 % of the area ratio 4;
   curves.json; and run_modal's outputs (modes.json, one XDMF/VTU step per mode)
"""

from __future__ import annotations

import json
import logging
import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

from weldsim_hpc import mesh as M
from weldsim_hpc.backends.scipy import harmonic as H
from weldsim_hpc.backends.scipy.modal import solve_modal
from weldsim_hpc.case import CaseSpec
from weldsim_hpc.materials import material_from_dict
from weldsim_hpc.physics.modal import ModeClass

import gmsh  # noqa: E402,F401  (the set-up installs it; the meshes below need it)

E, NU, RHO, ETA = 113.8e9, 0.342, 4430.0, 1e-4
C0, CT = math.sqrt(E / RHO), math.sqrt(E / (2 * (1 + NU)) / RHO)
TI = material_from_dict({
    "id": "ti_pinned", "name": "Ti-6Al-4V (pinned)", "density_kg_m3": RHO, "youngs_modulus_Pa": E,
    "poisson_ratio": NU, "conductivity_W_mK": 6.7, "specific_heat_J_kgK": 526.0, "expansion_1_K": 8.6e-6,
    "yield_strength_Pa": 880e6, "fatigue_strength_Pa": 510e6, "fatigue_cycles": 1e7,
    "loss_factor": ETA, "solidus_K": 1877.0})
MATS = {"horn": TI}
L = 0.12671
BAR = {"kind": "cylinder", "length_m": L, "diameter_m": 0.010}
STEPPED = {"kind": "stepped", "length_input_m": 0.06335, "length_output_m": 0.06335,
           "diameter_input_m": 0.020, "diameter_output_m": 0.010, "fillet_radius_m": 0.001}
U_OUT = 10e-6
SCALES = np.array([0.975, 1.0, 1.025])


def make_case(analysis: str, geometry: dict, target=20000.0, modes=8, **fields) -> CaseSpec:
    return CaseSpec.model_validate({
        "name": "scipy dynamics", "analysis": analysis, "geometry": geometry, "materials": {"horn": "ti"},
        "solver": {"target_frequency_Hz": target, "modes_wanted": modes},
        "harmonic": {"loss_factor": ETA, "output_amplitude_0pk_m": U_OUT}, **fields})


def horn_mesh(tmp_path_factory, name: str, geometry: dict, size: float, segments: int):
    from weldsim_hpc.geometry import parse_geometry
    from weldsim_hpc.geometry.meshing import generate
    from weldsim_hpc.geometry.sizing import ResolvedSizes

    base = tmp_path_factory.mktemp(name)
    files = generate(parse_geometry(geometry), ResolvedSizes(size, size, size, segments), base)
    return M.read_mesh_dir(M.write_mesh_dir(M.read_msh(files.msh), base / "mesh"))


def first(result, cls):
    return next((m for m in result.modes if m.mode_class is cls), None)


# --- 1. modal ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def modal_bar(tmp_path_factory):
    return horn_mesh(tmp_path_factory, "modal_bar", BAR, 0.005, 16)


def test_free_free_bar_longitudinal_torsional_and_no_rigid_modes(modal_bar):
    t0 = time.perf_counter()
    progress = []
    res = solve_modal(modal_bar, make_case("modal", BAR, modes=10), MATS, on_progress=lambda *a: progress.append(a))
    wall = time.perf_counter() - t0
    lon, tor = first(res, ModeClass.LONGITUDINAL), first(res, ModeClass.TORSIONAL)
    assert lon is not None and tor is not None, [m.mode_class for m in res.modes]
    err_lon, err_tor = lon.frequency_Hz / (C0 / (2 * L)) - 1, tor.frequency_Hz / (CT / (2 * L)) - 1
    print(f"\nscipy Ø10 bar ({res.n_dofs} dofs, {wall:.1f} s): longitudinal {lon.frequency_Hz:.2f} Hz "
          f"({err_lon:+.3%} vs c/2L), torsional {tor.frequency_Hz:.2f} Hz ({err_tor:+.4%} vs c_T/2L)")
    assert abs(err_lon) < 0.01 and abs(err_tor) < 0.002
    assert res.summary.working.index == lon.index
    assert lon.fractions.axial > 0.95 and tor.fractions.torsional > 0.95
    assert res.n_rigid_deflated == 6 and res.rigid_dropped == 0
    assert len(res.modes) == 10 and res.frequencies_Hz.min() > 1000.0
    assert np.all(np.diff(res.frequencies_Hz) >= 0)
    from weldsim_hpc.backends.scipy.modal import ModalProblem

    Mm = ModalProblem(modal_bar, make_case("modal", BAR), MATS).M
    norms = [s.ravel() @ (Mm @ s.ravel()) for s in res.shapes]
    assert np.allclose(norms, 1.0, rtol=1e-8), norms
    assert progress and progress[-1][2] == 100.0


def test_clamped_bar_quarter_wave(modal_bar):
    case = make_case("modal", BAR, target=10e3, modes=4,
                     boundary_conditions=[{"type": "fixed", "boundary": "input_face"}])
    res = solve_modal(modal_bar, case, MATS)
    lon = first(res, ModeClass.LONGITUDINAL)
    assert res.n_rigid_deflated == 0
    assert abs(lon.frequency_Hz / (C0 / (4 * L)) - 1) < 0.01, lon


# --- 2. displacement-driven bar ------------------------------------------------------------------
@pytest.fixture(scope="module")
def driven_bar(tmp_path_factory):
    mesh = horn_mesh(tmp_path_factory, "driven_bar", BAR, 0.003, 16)
    f1 = solve_modal(mesh, make_case("modal", BAR), MATS).summary.f_working_Hz
    case = make_case("harmonic", BAR)
    case = case.model_copy(update={"harmonic": case.harmonic.model_copy(
        update={"frequency_range_Hz": tuple(SCALES[[0, -1]] * f1), "frequency_points": 3})})
    t0 = time.perf_counter()
    result = H.solve_harmonic(mesh, case, MATS, f_working_Hz=f1)
    return mesh, f1, case, result, time.perf_counter() - t0


def test_bar_gain_is_one_over_cos_kl(driven_bar):
    _, f1, _, res, seconds = driven_bar
    exact = 1 / np.abs(np.cos(np.pi * SCALES))
    err = res.curves.gain / exact - 1
    print(f"\nscipy bar: f₁ {f1:.1f} Hz, gains {np.round(res.curves.gain, 5)} vs {np.round(exact, 5)} "
          f"(errors {np.round(100 * err, 3)} %), {len(res.mode_frequencies_Hz)} modes, {seconds:.1f} s")
    assert np.all(np.abs(err) < 0.005), err
    assert res.gain == pytest.approx(res.curves.gain[1], rel=1e-12)
    assert 0.99 < res.uniformity <= 1.0
    assert res.mode_frequencies_Hz.max() <= res.cutoff_Hz and res.cutoff_Hz >= 2 * 1.025 * f1


def test_bar_node_stress_is_E_U_pi_over_L(driven_bar):
    _, _, _, res, _ = driven_bar
    U = res.input_amplitude_0pk_m
    exact = E * U * math.pi / L
    err = res.max_von_mises_Pa / exact - 1
    print(f"\nscipy bar: peak σ_vm {res.max_von_mises_Pa / 1e6:.2f} MPa vs E·U·π/L {exact / 1e6:.2f} MPa ({err:+.2%})")
    assert abs(err) < 0.02
    assert U * res.gain == pytest.approx(U_OUT, rel=1e-12)
    assert res.fatigue_safety_factor == pytest.approx(510e6 / res.max_von_mises_Pa, rel=1e-12)
    assert res.max_displacement_m == pytest.approx(U_OUT, rel=0.02)
    sigma_zz = res.stress_at(np.array([[0.0, 0.0, L / 2]]))[0, 2]
    assert abs(abs(sigma_zz) / exact - 1) < 0.05, sigma_zz


def test_modal_superposition_matches_direct_solve(driven_bar):
    mesh, f1, case, res, _ = driven_bar
    problem = H.HarmonicProblem(mesh, case, MATS)
    problem.modal_basis(res.cutoff_Hz)
    f = SCALES[0] * f1
    gain, unif, _, force = problem.response(np.array([f]))
    g_d, u_d, F_d = problem.direct_response(f)
    assert abs(gain[0] / g_d - 1) < 0.005, (gain, g_d)
    assert abs(unif[0] / u_d - 1) < 0.005
    assert abs(force[0] - F_d) < 0.01 * abs(F_d), (force, F_d)


def test_cycle_peak_closed_form_matches_phase_sampling():
    rng = np.random.default_rng(7)
    xr, xi = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    t = np.linspace(0, 2 * np.pi, 3601)
    sampled = np.max(np.sum((xr[:, None] * np.cos(t)[:, None] - xi[:, None] * np.sin(t)[:, None]) ** 2, -1), 1)
    closed = H.cycle_peak_sq(np.sum(xr * xr, 1), np.sum(xi * xi, 1), np.sum(xr * xi, 1))
    assert np.allclose(closed, sampled, rtol=1e-6)


# --- 3. the stepped horn through the runners -----------------------------------------------------
@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    """Both circles get 20 facets, so the faceted area ratio is exactly 4."""
    return horn_mesh(tmp_path_factory, "stepped", STEPPED, 0.004, 20)


def _ctx(case, tmp_path):
    from weldsim_hpc.run_paths import RunPaths

    progress = []
    writer = SimpleNamespace(progress=lambda *a, **k: progress.append(a))
    ctx = SimpleNamespace(case=case, materials=MATS, paths=RunPaths.from_dir(tmp_path / "harmonic0001"),
                          open_writer=lambda **_: writer, log=logging.getLogger("test_scipy_dynamics"))
    return ctx, progress


def test_stepped_horn_gain_is_area_ratio_through_run_harmonic(stepped, tmp_path):
    from weldsim_hpc.backends.scipy.dynamics_runner import run_harmonic
    from weldsim_hpc.backends.scipy.output import write_fields

    case = make_case("harmonic", STEPPED)
    case = case.model_copy(update={"harmonic": case.harmonic.model_copy(update={"frequency_points": 21})})
    ctx, progress = _ctx(case, tmp_path)
    t0 = time.perf_counter()
    fields, values, _ = run_harmonic(ctx, stepped)
    seconds = time.perf_counter() - t0
    write_fields(fields, ctx.paths.fields_xdmf, ctx.paths.fields_pvd)
    err = values["gain"] / 4.0 - 1
    curves = json.loads((ctx.paths.results_dir / "curves.json").read_text())
    print(f"\nscipy stepped: f_working {values['f_working_Hz']:.1f} Hz, gain {values['gain']:.4f} ({err:+.2%}), "
          f"uniformity {values['uniformity']:.4f}, σ_vm {values['max_von_mises_Pa'] / 1e6:.1f} MPa, "
          f"{values['n_dofs']:.0f} dofs, run_harmonic {seconds:.1f} s")
    assert abs(err) < 0.02
    assert 18000 < values["f_working_Hz"] < 20000
    assert len(curves["gain"]) == 21 and curves["gain_at_f_working"] == pytest.approx(values["gain"])
    assert values["fatigue_safety_factor"] > 1 and progress[-1][2] == 100.0
    assert ctx.paths.fields_xdmf.is_file()


def test_run_modal_writes_one_step_per_mode(stepped, tmp_path):
    from weldsim_hpc.backends.scipy.dynamics_runner import run_modal

    ctx, _ = _ctx(make_case("modal", STEPPED, modes=6), tmp_path)
    fields, values, _ = run_modal(ctx, stepped)
    doc = json.loads((ctx.paths.results_dir / "modes.json").read_text())
    assert fields.displacement is None and values["modes_found"] == 6
    assert doc["rigid_modes_deflated"] == 6 and len(doc["modes"]) == 6
    work = next(m for m in doc["modes"] if m["working"])
    assert values["f_working_Hz"] == work["frequency_Hz"] and work["class"] == "longitudinal"
    assert ctx.paths.fields_xdmf.read_text().count('<Time Value="') == 6
    assert len(list(ctx.paths.results_dir.glob("fields_*.vtu"))) == 6
    assert ctx.paths.fields_pvd.read_text().count("<DataSet") == 6
