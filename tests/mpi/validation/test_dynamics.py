"""Modal and harmonic validation on both backends: the same mesh, case, reference, tolerance.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi \
         tests/mpi/validation/test_dynamics.py      (fenicsx on both ranks, scipy on rank 0)
Ti-6Al-4V pinned (E = 113.8 GPa, ν = 0.342, ρ = 4430 kg/m³, η = 1e-4, DOMAIN-NOTES). Meshes
come from the project's horn builders (gmsh on rank 0), P2 elements; every assertion is
collective.

1. bar modes, free-free Ø10 × 126.71 mm: first longitudinal within 1 % of c/(2L) and 0.2 % of
   Pochhammer–Chree 19991.0 Hz, first torsional within 0.2 % of c_T/(2L) (exact in 3-D),
   six rigid modes deflated and none listed, shapes mass-normalised; clamped at z = 0 the
   first longitudinal is the quarter-wave c/(4L)
2. bar gain and stress, the same bar displacement-driven: gain 1/|cos kL| within 0.5 % at
   0.975, 1.0 and 1.025 f₁ (kL = π f/f₁, f₁ the 3-D working frequency); mid-length (nodal)
   peak stress E·U_in·π/L within 2 %; modal superposition = a direct solve of
   K(1 + iη) − ω²M within 0.5 % in gain, 1 % in drive force
3. stepped-horn gain: Ø20/Ø10, two 63.35 mm sections, 1 mm fillet, through the backend's
   run_harmonic (free-free working frequency, curves.json, fields): gain within 2 % of the
   area ratio 4
4. preview comparison: the 1-D (Webster) estimate of the preview backend lies 1–5 % above
   that horn's 3-D working frequency (measured ≈ 2.5 %: the step and lateral inertia lower it)
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

import dolfinx  # noqa: F401  (tests/conftest.py collects tests/mpi only under mpirun)

from weldsim_hpc.case import CaseSpec
from weldsim_hpc.materials import material_from_dict
from weldsim_hpc.physics.modal import ModeClass

from ..collective import assert_all
from ._backends import COMM, on_root_idle, report
from ._meshes import horn_mesh_dir

E, NU, RHO, ETA = 113.8e9, 0.342, 4430.0, 1e-4
C0 = math.sqrt(E / RHO)
CT = math.sqrt(E / (2 * (1 + NU)) / RHO)
L = 0.12671
TI = material_from_dict({
    "id": "ti_pinned", "name": "Ti-6Al-4V (pinned)", "density_kg_m3": RHO, "youngs_modulus_Pa": E,
    "poisson_ratio": NU, "conductivity_W_mK": 6.7, "specific_heat_J_kgK": 526.0, "expansion_1_K": 8.6e-6,
    "yield_strength_Pa": 880e6, "fatigue_strength_Pa": 510e6, "fatigue_cycles": 1e7,
    "loss_factor": ETA, "solidus_K": 1877.0})
MATS = {"horn": TI}
BAR = {"kind": "cylinder", "length_m": L, "diameter_m": 0.010}
STEPPED = {"kind": "stepped", "length_input_m": 0.06335, "length_output_m": 0.06335,
           "diameter_input_m": 0.020, "diameter_output_m": 0.010, "fillet_radius_m": 0.001}
U_OUT = 10e-6
SCALES = np.array([0.975, 1.0, 1.025])


def make_case(analysis: str, geometry: dict, target: float = 20000.0, modes: int = 8, **fields) -> CaseSpec:
    harmonic = {"loss_factor": ETA, "output_amplitude_0pk_m": U_OUT, **fields.pop("harmonic", {})}
    return CaseSpec.model_validate({
        "name": "validation", "analysis": analysis, "geometry": geometry, "materials": {"horn": "ti"},
        "solver": {"target_frequency_Hz": target, "modes_wanted": modes}, "harmonic": harmonic, **fields})


def first(modes, cls):
    return next((m for m in modes if m.mode_class is cls), None)


# --- 1. bar modes ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def modal_bar(tmp_path_factory):
    return horn_mesh_dir(tmp_path_factory, "modal_bar", BAR, 0.005, 20)


@pytest.mark.mpi
def test_free_free_bar_longitudinal_torsional_and_no_rigid_modes(backend, modal_bar):
    case = make_case("modal", BAR, modes=10)

    def measure():
        mesh = backend.mesh(modal_bar)
        progress = []
        t0 = time.perf_counter()
        res = backend.solve_modal(mesh, case, MATS, on_progress=lambda *a: progress.append(a))
        return {"modes": res.modes, "frequencies": np.asarray(res.frequencies_Hz), "working": res.summary.working.index,
                "rigid": (res.n_rigid_deflated, res.rigid_dropped), "n_dofs": res.n_dofs,
                "seconds": time.perf_counter() - t0, "norms": backend.mass_norms(mesh, res, case, MATS),
                "last_percent": progress[-1][2] if progress else None}

    m = backend.measure(measure)
    modes = m["modes"]
    lon, tor = first(modes, ModeClass.LONGITUDINAL), first(modes, ModeClass.TORSIONAL)
    assert_all(lon is not None and tor is not None, f"classes {[x.mode_class for x in modes]}")
    f_lon, f_tor = C0 / (2 * L), CT / (2 * L)
    err_lon, err_pc, err_tor = (abs(lon.frequency_Hz / f_lon - 1), abs(lon.frequency_Hz / 19991.0 - 1),
                                abs(tor.frequency_Hz / f_tor - 1))
    report(backend, f"Ø10 bar ({m['n_dofs']} dofs, {m['seconds']:.1f} s): longitudinal {lon.frequency_Hz:.2f} Hz vs "
           f"c/2L {f_lon:.2f} ({err_lon:.3%}), vs Pochhammer–Chree 19991.0 ({err_pc:.3%}); torsional "
           f"{tor.frequency_Hz:.2f} vs c_T/2L {f_tor:.2f} ({err_tor:.4%}); modes "
           + ", ".join(f"{x.frequency_Hz:.0f} {x.mode_class.value[:4]}" for x in modes))
    assert_all(err_lon < 0.01 and err_pc < 0.002, f"longitudinal {lon}")
    assert_all(err_tor < 0.002, f"torsional {tor}")
    assert_all(m["working"] == lon.index, "working mode is not the longitudinal one")
    assert_all(lon.fractions.axial > 0.95 and tor.fractions.torsional > 0.95, f"{lon} {tor}")
    assert_all(m["rigid"] == (6, 0), f"rigid deflated, dropped {m['rigid']}")
    assert_all(len(modes) == 10 and m["frequencies"].min() > 1000.0, f"{m['frequencies']}")
    assert_all(np.all(np.diff(m["frequencies"]) >= 0), "not ascending")
    assert_all(np.allclose(m["norms"], 1.0, rtol=1e-8), f"φᵀMφ = {m['norms']}")
    assert_all(m["last_percent"] == 100.0, "no final progress call")


@pytest.mark.mpi
def test_clamped_bar_quarter_wave(backend, modal_bar):
    """fixed on input_face: no rigid mode to deflate; f1 = c/(4L) (lateral inertia ~1e-4)."""
    case = make_case("modal", BAR, target=10e3, modes=4,
                     boundary_conditions=[{"type": "fixed", "boundary": "input_face"}])

    def measure():
        res = backend.solve_modal(backend.mesh(modal_bar), case, MATS)
        return res.modes, res.n_rigid_deflated

    modes, rigid = backend.measure(measure)
    lon = first(modes, ModeClass.LONGITUDINAL)
    assert_all(lon is not None, f"classes {[x.mode_class for x in modes]}")
    err = abs(lon.frequency_Hz / (C0 / (4 * L)) - 1)
    report(backend, f"clamped bar: quarter-wave {lon.frequency_Hz:.2f} Hz vs c/4L {C0 / (4 * L):.2f} ({err:.3%})")
    assert_all(rigid == 0 and err < 0.01, f"{lon}, rigid {rigid}")


# --- 2. bar gain and stress -------------------------------------------------------------------
@pytest.fixture(scope="module")
def driven_bar_mesh(tmp_path_factory):
    return horn_mesh_dir(tmp_path_factory, "driven_bar", BAR, 0.003, 16)   # ≈ 4.7k P2 tets


@pytest.fixture(scope="module")
def driven_bar(backend, driven_bar_mesh):
    """(f₁ 3-D, case over 0.975–1.025 f₁, HarmonicResult, seconds); the result lives where
    the backend solves (None on idle ranks), f₁ and the case on every rank."""
    def solve():
        mesh = backend.mesh(driven_bar_mesh)
        f1 = float(backend.solve_modal(mesh, make_case("modal", BAR), MATS).summary.f_working_Hz)
        case = make_case("harmonic", BAR, harmonic={"frequency_range_Hz": tuple(SCALES[[0, -1]] * f1),
                                                    "frequency_points": 3})
        t0 = time.perf_counter()
        return f1, case, backend.solve_harmonic(mesh, case, MATS, f1), time.perf_counter() - t0

    out = backend.run(solve)
    f1, case, seconds = COMM.bcast(None if out is None else (out[0], out[1], out[3]), root=0)
    return f1, case, (None if out is None else out[2]), seconds


@pytest.mark.mpi
def test_bar_gain_is_one_over_cos_kl(backend, driven_bar):
    f1, _, res, seconds = driven_bar
    m = backend.measure(lambda: {"gains": res.curves.gain, "gain": res.gain, "uniformity": res.uniformity,
                                 "modes": res.mode_frequencies_Hz, "cutoff": res.cutoff_Hz})
    exact = 1 / np.abs(np.cos(np.pi * SCALES))
    err = m["gains"] / exact - 1
    report(backend, f"bar: f₁ = {f1:.1f} Hz (1-D {C0 / (2 * L):.1f}); gains {np.round(m['gains'], 5)} vs "
           f"1/|cos kL| {np.round(exact, 5)} (errors {np.round(100 * err, 3)} %); {len(m['modes'])} fixed-input "
           f"modes ≤ {m['cutoff']:.0f} Hz; solve {seconds:.1f} s")
    assert_all(np.all(np.abs(err) < 0.005), f"gain errors {err}")
    assert_all(m["gain"] == pytest.approx(m["gains"][1], rel=1e-12), f"{m['gain']} vs {m['gains']}")
    assert_all(0.99 < m["uniformity"] <= 1.0, f"uniformity {m['uniformity']}")
    assert_all(m["modes"].max() <= m["cutoff"] and m["cutoff"] >= 2 * 1.025 * f1,
               f"modes {m['modes']}, cut-off {m['cutoff']}")


@pytest.mark.mpi
def test_bar_node_stress_is_E_U_pi_over_L(backend, driven_bar):
    _, _, res, _ = driven_bar
    node = [[0.0, 0.0, L / 2]]
    m = backend.measure(lambda: {
        "U": res.input_amplitude_0pk_m, "gain": res.gain, "peak": res.max_von_mises_Pa,
        "fatigue": res.fatigue_safety_factor, "max_u": res.max_displacement_m,
        "vm_node": float(backend.von_mises_at(res, node)[0]), "szz_node": float(backend.stress_at(res, node)[0, 2])})
    U = m["U"]
    exact = E * U * math.pi / L
    err = m["peak"] / exact - 1
    report(backend, f"bar: U_in = {U * 1e6:.4f} µm for {U_OUT * 1e6:g} µm out; peak σ_vm {m['peak'] / 1e6:.2f} MPa "
           f"vs E·U·π/L {exact / 1e6:.2f} MPa ({err:+.2%}); at the node σ_vm {m['vm_node'] / 1e6:.2f}, "
           f"σ_zz {m['szz_node'] / 1e6:.2f} MPa; fatigue SF {m['fatigue']:.2f}")
    assert_all(abs(err) < 0.02, f"peak stress {m['peak']} vs {exact}")
    # the peak sits at the displacement node, mid-length: the cell there carries it too
    assert_all(abs(m["vm_node"] / exact - 1) < 0.02 and m["vm_node"] > 0.98 * m["peak"],
               f"σ_vm at the node {m['vm_node']} vs {exact}, peak {m['peak']}")
    assert_all(abs(abs(m["szz_node"]) / exact - 1) < 0.05, f"σ_zz at the node {m['szz_node']} vs {exact}")
    assert_all(U * m["gain"] == pytest.approx(U_OUT, rel=1e-12), f"{U} × {m['gain']}")
    assert_all(m["fatigue"] == pytest.approx(510e6 / m["peak"], rel=1e-12), "fatigue")
    assert_all(m["max_u"] == pytest.approx(U_OUT, rel=0.02), f"max |u| {m['max_u']}")


@pytest.mark.mpi
def test_modal_superposition_matches_direct_solve(backend, driven_bar, driven_bar_mesh):
    f1, case, res, _ = driven_bar

    def measure():
        with backend.harmonic_problem(backend.mesh(driven_bar_mesh), case, MATS) as problem:
            problem.modal_basis(res.cutoff_Hz)
            freqs = SCALES * f1
            gain, unif, _, force = problem.response(freqs)
            t0 = time.perf_counter()
            direct = [problem.direct_response(f) for f in freqs]
            return {"gain": gain, "unif": unif, "force": force, "direct": direct, "curve": res.curves.gain,
                    "seconds": time.perf_counter() - t0}

    m = backend.measure(measure)
    gain, force = m["gain"], m["force"]
    g_d = np.array([d[0] for d in m["direct"]])
    u_d = np.array([d[1] for d in m["direct"]])
    F_d = np.array([d[2] for d in m["direct"]])
    err = gain / g_d - 1
    f_err = np.abs(force - F_d) / np.abs(F_d).max()
    report(backend, f"bar: modal gains {np.round(gain, 5)} vs direct {np.round(g_d, 5)} ({np.round(100 * err, 3)} %); "
           f"|F| modal {np.round(np.abs(force) * U_OUT, 2)} N vs direct {np.round(np.abs(F_d) * U_OUT, 2)} N at "
           f"10 µm in (errors {np.round(100 * f_err, 3)} % of max); 3 direct solves {m['seconds']:.1f} s")
    assert_all(np.all(np.abs(err) < 0.005), f"modal vs direct gain {err}")
    assert_all(np.allclose(m["unif"], u_d, rtol=0.005), f"uniformity {m['unif']} vs {u_d}")
    assert_all(np.all(f_err < 0.01), f"drive force {force} vs {F_d}")
    # off resonance the force is large: there it agrees to 1 % of its own value
    assert_all(abs(force[0] - F_d[0]) < 0.01 * abs(F_d[0]), f"drive force at 0.975 f₁ {force[0]} vs {F_d[0]}")
    assert_all(np.allclose(gain, m["curve"], rtol=1e-9), "response() vs solve_harmonic curves")


# --- 3. and 4. the stepped horn -----------------------------------------------------------------
@pytest.fixture(scope="module")
def stepped_mesh(tmp_path_factory):
    """Both circles get 20 facets (mesh 4 mm, curvature 20), so the faceted area ratio is exactly 4."""
    return horn_mesh_dir(tmp_path_factory, "stepped", STEPPED, 0.004, 20)   # ≈ 8k P2 tets


@pytest.fixture(scope="module")
def stepped_run(backend, stepped_mesh, tmp_path_factory):
    """The backend's run_harmonic on the stepped horn (21 frequencies), fields written."""
    root = on_root_idle(lambda: str(tmp_path_factory.mktemp(f"runs_{backend.name}") / "harmonic0001"))
    case = make_case("harmonic", STEPPED, harmonic={"frequency_points": 21})
    return backend.measure(lambda: backend.run_harmonic(backend.mesh(stepped_mesh), case, MATS, root))


@pytest.mark.mpi
def test_stepped_horn_gain_is_area_ratio_through_run_harmonic(backend, stepped_run):
    values, curves = stepped_run["values"], stepped_run["curves"]
    err = values["gain"] / 4.0 - 1
    report(backend, f"stepped: f_working {values['f_working_Hz']:.1f} Hz, gain {values['gain']:.4f} ({err:+.2%} vs 4), "
           f"uniformity {values['uniformity']:.4f}, peak σ_vm {values['max_von_mises_Pa'] / 1e6:.1f} MPa at "
           f"{U_OUT * 1e6:g} µm out, {len(curves['fixed_input_modes_Hz'])} modes; run_harmonic "
           f"{stepped_run['seconds']:.1f} s")
    assert_all(abs(err) < 0.02, f"stepped gain {values['gain']}")
    assert_all(18000 < values["f_working_Hz"] < 20000, f"f_working {values['f_working_Hz']}")
    assert_all(len(curves["frequency_Hz"]) == 21 and len(curves["gain"]) == 21
               and curves["gain_at_f_working"] == pytest.approx(values["gain"]), f"{sorted(curves)}")
    assert_all(values["output_amplitude_0pk_m"] == U_OUT and values["fatigue_safety_factor"] > 1, f"{values}")
    assert_all(stepped_run["last_percent"] == 100.0, "no final progress call")
    assert_all(stepped_run["fields_xdmf"], "fields.xdmf")


@pytest.mark.mpi
def test_preview_estimate_lies_just_above_the_3d_working_frequency(backend, stepped_run):
    """The preview backend's 1-D Webster estimate of the same horn (the 3-D runs report it
    beside their working frequency) is 1–5 % above the 3-D value of either backend."""
    from weldsim_hpc.backends.preview import preview_case

    f3d = stepped_run["values"]["f_working_Hz"]
    f1d = preview_case(make_case("modal", STEPPED), TI).f_working_Hz
    report(backend, f"stepped: 1-D estimate {f1d:.1f} Hz lies {f1d / f3d - 1:+.2%} above the 3-D value {f3d:.1f} Hz")
    assert_all(0.01 < f1d / f3d - 1 < 0.05, f"1-D {f1d} vs 3-D {f3d}")
