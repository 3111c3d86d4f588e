"""Harmonic base excitation (modal superposition) vs closed forms and a direct solve, 1 and 2 ranks.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi \
         tests/mpi/test_harmonic_mpi.py      (and with -n 1)
Ti-6Al-4V pinned (E = 113.8 GPa, ν = 0.342, ρ = 4430 kg/m³, η = 1e-4). Meshes come from the
project's horn builders (gmsh on rank 0), P2 elements; every assertion is collective.

1. displacement-driven uniform bar Ø10 × 126.71 mm: gain 1/|cos kL| within 0.5 % at 0.975,
   1.0 and 1.025 f₁, with kL = π f/f₁ and f₁ the 3-D free-free longitudinal frequency (the
   working frequency solve_modal reports; the 1-D c/2L is 0.03 % higher)
2. its nodal (mid-length) peak stress E·U_in·π/L within 2 % (output scaled to 10 µm 0-peak)
3. modal superposition = the direct 2×2 real block solve of K(1 + iη) − ω²M (MUMPS) within
   0.5 % in gain, and in the drive force within 1 % of its largest value
4. the same gains on all ranks and on one (COMM_SELF on rank 0) to 1e-6 relative
5. stepped Ti horn Ø20/Ø10, two 63.35 mm sections, 1 mm fillet, through run_harmonic
   (free-free working frequency, curves.json, fields): gain within 2 % of the area ratio 4
"""

from __future__ import annotations

import json
import logging
import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

import dolfinx  # noqa: F401  (tests/conftest.py collects tests/mpi only under mpirun)
from mpi4py import MPI

from weldsim_hpc import mesh as M
from weldsim_hpc.backends.fenicsx import compat, harmonic as H
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
STEPPED = {"kind": "stepped", "length_input_m": 0.06335, "length_output_m": 0.06335,
           "diameter_input_m": 0.020, "diameter_output_m": 0.010, "fillet_radius_m": 0.001}
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
    path = mesh_dir(tmp_path_factory, "bar", BAR, 0.003, 16)   # ≈ 4.7k P2 tets
    fmesh = read_mesh(path, COMM)
    f1 = working_frequency(fmesh, COMM, BAR)
    case = make_case(BAR, frequency_range_Hz=tuple(SCALES[[0, -1]] * f1), frequency_points=3)
    t0 = time.perf_counter()
    result = H.solve_harmonic(fmesh, COMM, case, MATERIALS, f_working_Hz=f1)
    return path, fmesh, f1, case, result, time.perf_counter() - t0


@pytest.mark.mpi
def test_bar_gain_is_one_over_cos_kl(bar):
    _, _, f1, _, res, seconds = bar
    exact = 1 / np.abs(np.cos(np.pi * SCALES))
    err = res.curves.gain / exact - 1
    report(f"bar: f₁ = {f1:.1f} Hz (1-D {math.sqrt(E / RHO) / (2 * BAR['length_m']):.1f}); gains "
           f"{np.round(res.curves.gain, 5)} vs 1/|cos kL| {np.round(exact, 5)} (errors {np.round(100 * err, 3)} %); "
           f"{len(res.mode_frequencies_Hz)} fixed-input modes ≤ {res.cutoff_Hz:.0f} Hz; solve {seconds:.1f} s")
    assert_all(np.all(np.abs(err) < 0.005), f"gain errors {err}")
    assert_all(res.gain == pytest.approx(res.curves.gain[1], rel=1e-12), f"{res.gain} vs {res.curves.gain}")
    assert_all(res.uniformity > 0.99 and res.uniformity <= 1.0, f"uniformity {res.uniformity}")
    assert_all(res.mode_frequencies_Hz.max() <= res.cutoff_Hz and res.cutoff_Hz >= 2 * 1.025 * f1,
               f"modes {res.mode_frequencies_Hz}, cut-off {res.cutoff_Hz}")


@pytest.mark.mpi
def test_bar_node_stress_is_E_U_pi_over_L(bar):
    _, _, _, _, res, _ = bar
    U = res.input_amplitude_0pk_m
    exact = E * U * math.pi / BAR["length_m"]
    err = res.max_von_mises_Pa / exact - 1
    report(f"bar: U_in = {U * 1e6:.4f} µm for {U_OUT * 1e6:g} µm out; peak σ_vm {res.max_von_mises_Pa / 1e6:.2f} MPa "
           f"vs E·U·π/L {exact / 1e6:.2f} MPa ({err:+.2%}); fatigue SF {res.fatigue_safety_factor:.2f}")
    assert_all(abs(err) < 0.02, f"peak stress {res.max_von_mises_Pa} vs {exact}")
    # the peak sits at the displacement node, mid-length: the cell there carries it too
    node = compat.evaluate_at_points(res.von_mises_dg0, [[0.0, 0.0, BAR["length_m"] / 2]], COMM)[0]
    assert_all(abs(node / exact - 1) < 0.02 and node > 0.98 * res.max_von_mises_Pa,
               f"σ_vm at the node {node} vs {exact}, peak {res.max_von_mises_Pa}")
    assert_all(U * res.gain == pytest.approx(U_OUT, rel=1e-12), f"{U} × {res.gain}")
    assert_all(res.fatigue_safety_factor == pytest.approx(510e6 / res.max_von_mises_Pa, rel=1e-12), "fatigue")
    assert_all(res.max_displacement_m == pytest.approx(U_OUT, rel=0.02), f"max |u| {res.max_displacement_m}")


@pytest.mark.mpi
def test_modal_superposition_matches_direct_block_solve(bar):
    _, fmesh, f1, case, res, _ = bar
    problem = H.HarmonicProblem(fmesh, COMM, case, MATERIALS)
    try:
        problem.modal_basis(res.cutoff_Hz)
        freqs = SCALES * f1
        gain, unif, _, force = problem.response(freqs)
        t0 = time.perf_counter()
        direct = [problem.direct_response(f) for f in freqs]
        seconds = time.perf_counter() - t0
    finally:
        problem.destroy()
    g_d = np.array([d[0] for d in direct])
    u_d = np.array([d[1] for d in direct])
    F_d = np.array([d[2] for d in direct])
    err = gain / g_d - 1
    f_err = np.abs(force - F_d) / np.abs(F_d).max()
    report(f"bar: modal gains {np.round(gain, 5)} vs direct {np.round(g_d, 5)} ({np.round(100 * err, 3)} %); "
           f"|F| modal {np.round(np.abs(force) * U_OUT, 2)} N vs direct {np.round(np.abs(F_d) * U_OUT, 2)} N "
           f"at 10 µm in (errors {np.round(100 * f_err, 3)} % of max); 3 direct solves {seconds:.1f} s")
    assert_all(np.all(np.abs(err) < 0.005), f"modal vs direct gain {err}")
    assert_all(np.allclose(unif, u_d, rtol=0.005), f"uniformity {unif} vs {u_d}")
    assert_all(np.all(f_err < 0.01), f"drive force {force} vs {F_d}")
    assert_all(np.allclose(gain, res.curves.gain, rtol=1e-9), "response() vs solve_harmonic curves")


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


# --- the stepped horn through the runner -----------------------------------------------------
@pytest.mark.mpi
def test_stepped_horn_gain_is_area_ratio_through_run_harmonic(tmp_path_factory):
    """Both circles get 20 facets (mesh 4 mm, curvature 20), so the faceted area ratio is exactly 4."""
    from weldsim_hpc.backends.fenicsx.harmonic_runner import run_harmonic
    from weldsim_hpc.backends.fenicsx.output import write_fields
    from weldsim_hpc.run_paths import RunPaths

    path = mesh_dir(tmp_path_factory, "stepped", STEPPED, 0.004, 20)   # ≈ 8k P2 tets
    fmesh = read_mesh(path, COMM)
    root = on_root(lambda: str(tmp_path_factory.mktemp("runs") / "harmonic0001"))
    progress = []
    writer = SimpleNamespace(progress=lambda *a, **k: progress.append(a))
    ctx = SimpleNamespace(case=make_case(STEPPED, frequency_points=21), comm=COMM, materials=MATERIALS,
                          paths=RunPaths.from_dir(root), open_writer=lambda **_: writer,
                          log=logging.getLogger("test_harmonic"))
    t0 = time.perf_counter()
    fields, values, _ = run_harmonic(ctx, fmesh)
    seconds = time.perf_counter() - t0
    write_fields(fields, ctx.paths.fields_xdmf, ctx.paths.fields_pvd)
    err = values["gain"] / 4.0 - 1
    curves = on_root(lambda: json.loads((ctx.paths.results_dir / "curves.json").read_text()))
    report(f"stepped: f_working {values['f_working_Hz']:.1f} Hz, gain {values['gain']:.4f} ({err:+.2%} vs 4), "
           f"uniformity {values['uniformity']:.4f}, peak σ_vm {values['max_von_mises_Pa'] / 1e6:.1f} MPa at "
           f"{U_OUT * 1e6:g} µm out, {len(curves['fixed_input_modes_Hz'])} modes; run_harmonic {seconds:.1f} s")
    assert_all(abs(err) < 0.02, f"stepped gain {values['gain']}")
    assert_all(18000 < values["f_working_Hz"] < 20000, f"f_working {values['f_working_Hz']}")
    assert_all(len(curves["frequency_Hz"]) == 21 and len(curves["gain"]) == 21
               and curves["gain_at_f_working"] == pytest.approx(values["gain"]), f"{sorted(curves)}")
    assert_all(values["output_amplitude_0pk_m"] == U_OUT and values["fatigue_safety_factor"] > 1, f"{values}")
    assert_all(progress and progress[-1][2] == 100.0, "no final progress call")
    assert_all(COMM.bcast(ctx.paths.fields_xdmf.is_file() if COMM.rank == 0 else None), "fields.xdmf")


@pytest.mark.mpi
def test_cycle_peak_closed_form_matches_phase_sampling():
    """max_t |x_r cos t − x_i sin t|² in closed form = a fine sampling of the phase."""
    rng = np.random.default_rng(7)
    xr, xi = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    t = np.linspace(0, 2 * np.pi, 3601)
    sampled = np.max(np.sum((xr[:, None] * np.cos(t)[:, None] - xi[:, None] * np.sin(t)[:, None]) ** 2, -1), 1)
    closed = H.cycle_peak_sq(np.sum(xr * xr, 1), np.sum(xi * xi, 1), np.sum(xr * xi, 1))
    assert_all(np.allclose(closed, sampled, rtol=1e-6), f"{closed[:3]} vs {sampled[:3]}")
