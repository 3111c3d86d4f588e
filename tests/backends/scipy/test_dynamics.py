"""scipy backend modal and harmonic pieces beyond the validation cases (plain pytest, no dolfinx).

Ti-6Al-4V pinned: E = 113.8 GPa, ν = 0.342, ρ = 4430 kg/m³, η = 1e-4. Meshes from the
project's horn builders (gmsh, in this process), quadratic tetrahedra. The bar modes, bar
gain and stress, modal superposition vs direct solve, stepped-horn gain and the preview
comparison run on both backends in tests/mpi/validation/test_dynamics.py.

1. the closed-form peak over the cycle = a fine phase sampling
2. run_modal's outputs on the stepped Ø20/Ø10 horn: modes.json, one XDMF/VTU step per mode
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from weldsim_hpc import mesh as M
from weldsim_hpc.backends.scipy import harmonic as H
from weldsim_hpc.case import CaseSpec
from weldsim_hpc.materials import material_from_dict

import gmsh  # noqa: E402,F401  (the set-up installs it; the meshes below need it)

E, NU, RHO, ETA = 113.8e9, 0.342, 4430.0, 1e-4
TI = material_from_dict({
    "id": "ti_pinned", "name": "Ti-6Al-4V (pinned)", "density_kg_m3": RHO, "youngs_modulus_Pa": E,
    "poisson_ratio": NU, "conductivity_W_mK": 6.7, "specific_heat_J_kgK": 526.0, "expansion_1_K": 8.6e-6,
    "yield_strength_Pa": 880e6, "fatigue_strength_Pa": 510e6, "fatigue_cycles": 1e7,
    "loss_factor": ETA, "solidus_K": 1877.0})
MATS = {"horn": TI}
STEPPED = {"kind": "stepped", "length_input_m": 0.06335, "length_output_m": 0.06335,
           "diameter_input_m": 0.020, "diameter_output_m": 0.010, "fillet_radius_m": 0.001}
U_OUT = 10e-6


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


def test_cycle_peak_closed_form_matches_phase_sampling():
    rng = np.random.default_rng(7)
    xr, xi = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    t = np.linspace(0, 2 * np.pi, 3601)
    sampled = np.max(np.sum((xr[:, None] * np.cos(t)[:, None] - xi[:, None] * np.sin(t)[:, None]) ** 2, -1), 1)
    closed = H.cycle_peak_sq(np.sum(xr * xr, 1), np.sum(xi * xi, 1), np.sum(xr * xi, 1))
    assert np.allclose(closed, sampled, rtol=1e-6)


# --- the stepped horn through run_modal -----------------------------------------------------
@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    return horn_mesh(tmp_path_factory, "stepped", STEPPED, 0.004, 20)


def _ctx(case, tmp_path):
    from weldsim_hpc.run_paths import RunPaths

    progress = []
    writer = SimpleNamespace(progress=lambda *a, **k: progress.append(a))
    ctx = SimpleNamespace(case=case, materials=MATS, paths=RunPaths.from_dir(tmp_path / "harmonic0001"),
                          open_writer=lambda **_: writer, log=logging.getLogger("test_scipy_dynamics"))
    return ctx, progress


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
