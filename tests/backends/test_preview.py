"""The preview backend: 1-D estimates of parametric horns from a CaseSpec."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from weldsim_hpc.backends.preview import BASIS, NEW_METRIC_UNITS, horn_profile, preview_case
from weldsim_hpc.backends.registry import BackendError
from weldsim_hpc.case import CaseSpec
from weldsim_hpc.case_io import load_case
from weldsim_hpc.geometry.horns import CatenoidalHorn, ConicalHorn, ExponentialHorn, SteppedHorn
from weldsim_hpc.materials import Material
from weldsim_hpc.physics.webster import (
    closed_form_gain,
    length_factor,
    solve_webster,
    stepped_mode,
    stress_factor,
    uniform_nodal_stress,
)
from weldsim_hpc.results import METRICS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Ti-6Al-4V pinned here (DOMAIN-NOTES table), not taken from the library
TI = Material(id="ti_test", name="Ti-6Al-4V (test)", density_kg_m3=4430.0, youngs_modulus_Pa=113.8e9,
              poisson_ratio=0.342, conductivity_W_mK=6.7, specific_heat_J_kgK=526.0, expansion_1_K=8.6e-6,
              yield_strength_Pa=880e6, fatigue_strength_Pa=510e6, fatigue_cycles=1e9, loss_factor=5e-5,
              solidus_K=1877.15)
C_TI = TI.bar_sound_speed_m_s


def horn_case(geometry: dict, target: float | None = 20e3, amplitude: float = 15e-6) -> CaseSpec:
    solver = {"target_frequency_Hz": target} if target else {}
    return CaseSpec.model_validate({
        "name": "preview test", "analysis": "modal", "geometry": geometry,
        "materials": {"horn": "ti6al4v"}, "solver": solver,
        "harmonic": {"output_amplitude_0pk_m": amplitude}})


def test_half_wave_cylinder():
    length = C_TI / 40e3                               # 126.71 mm
    r = preview_case(horn_case({"kind": "cylinder", "length_m": length, "diameter_m": 0.012},
                               amplitude=10e-6), TI)
    assert r.basis == BASIS == "1-D estimate"
    assert r.f_working_Hz == pytest.approx(20e3, rel=1e-12)
    assert r.tuning_error_Hz == pytest.approx(0.0, abs=1e-6)
    assert r.resonant_length_m == pytest.approx(0.12671, abs=5e-6)
    assert r.gain == pytest.approx(1.0, rel=1e-12)
    assert r.node_z_m == pytest.approx(length / 2, rel=1e-12)
    assert r.max_stress_Pa / 1e6 == pytest.approx(28.2, abs=0.05)     # 20 µm peak-to-peak
    assert r.fatigue_safety_factor == pytest.approx(510e6 / r.max_stress_Pa, rel=1e-12)
    assert r.input_amplitude_0pk_m == pytest.approx(10e-6)
    assert not any("width/length" in n for n in r.notes)           # Ø12 / 127 mm is slender


def test_tuning_error_and_resonant_length_of_a_long_bar():
    r = preview_case(horn_case({"kind": "cylinder", "length_m": 0.130, "diameter_m": 0.03}, target=20e3), TI)
    assert r.f_working_Hz == pytest.approx(C_TI / 0.26, rel=1e-12)
    assert r.tuning_error_Hz == pytest.approx(C_TI / 0.26 - 20e3, rel=1e-9)
    assert r.resonant_length_m == pytest.approx(C_TI / 40e3, rel=1e-12)
    assert any("width/length = 0.23" in n for n in r.notes)


@pytest.mark.parametrize("kind", ["conical", "exponential", "catenoidal"])
def test_tapered_horns_match_the_closed_forms_for_n4(kind):
    length = length_factor(kind, 4.0) * C_TI / 40e3       # resonant at 20 kHz
    geometry = {"kind": kind, "length_m": length, "diameter_input_m": 0.04, "diameter_output_m": 0.01}
    r = preview_case(horn_case(geometry), TI)
    assert r.f_working_Hz == pytest.approx(20e3, rel=1e-9)
    assert r.resonant_length_m == pytest.approx(length, rel=1e-9)
    assert r.gain == pytest.approx(closed_form_gain(kind, 4.0), rel=1e-9)
    uniform = uniform_nodal_stress(TI.youngs_modulus_Pa, TI.density_kg_m3, 20e3, 15e-6)
    assert r.max_stress_Pa / uniform == pytest.approx(stress_factor(kind, 4.0), rel=1e-9)
    assert r.method.startswith("closed form")


@pytest.mark.parametrize("horn_cls", [ConicalHorn, ExponentialHorn, CatenoidalHorn])
def test_horn_profile_of_the_geometry_model_gives_the_same_mode(horn_cls):
    horn = horn_cls(length_m=0.14, diameter_input_m=0.05, diameter_output_m=0.02)
    r = preview_case(horn_case(horn.model_dump()), TI)
    numeric = solve_webster(horn_profile(horn), C_TI)
    assert numeric.frequency_Hz == pytest.approx(r.f_working_Hz, rel=1e-3)
    assert numeric.gain == pytest.approx(r.gain, rel=1e-3)
    assert numeric.node_z_m == pytest.approx(r.node_z_m, rel=1e-3)
    assert numeric.stress_Pa(TI.youngs_modulus_Pa, 15e-6) == pytest.approx(r.max_stress_Pa, rel=1e-3)


def test_stepped_horn_uses_its_fillet_and_stays_close_to_the_sharp_step():
    quarter = C_TI / 80e3
    horn = SteppedHorn(length_input_m=quarter, length_output_m=quarter, diameter_input_m=0.04,
                       diameter_output_m=0.02, fillet_radius_m=0.002)
    r = preview_case(horn_case(horn.model_dump()), TI)
    sharp = stepped_mode(quarter, quarter, math.pi * 4e-4, math.pi * 1e-4, C_TI)
    assert r.method.startswith("numerical Webster")
    assert sharp.frequency_Hz == pytest.approx(20e3, rel=1e-12) and sharp.gain == pytest.approx(4.0)
    assert r.f_working_Hz != sharp.frequency_Hz                     # the fillet is seen ...
    assert r.f_working_Hz == pytest.approx(20e3, rel=5e-3)          # ... but is small
    assert r.gain == pytest.approx(4.0, rel=5e-3)
    assert r.node_z_m == pytest.approx(quarter, abs=2e-3)
    assert any("sharp step gives 20000 Hz" in n for n in r.notes)


def test_resonant_length_resonates_at_the_target():
    horn = SteppedHorn(length_input_m=0.06, length_output_m=0.07, diameter_input_m=0.04,
                       diameter_output_m=0.02, fillet_radius_m=0.003)
    r = preview_case(horn_case(horn.model_dump(), target=20e3), TI)
    assert r.f_working_Hz == pytest.approx(19000, rel=0.03)          # well off the target
    scale = r.resonant_length_m / horn.length_m                       # sections scaled, fillet kept
    scaled = SteppedHorn(length_input_m=0.06 * scale, length_output_m=0.07 * scale, diameter_input_m=0.04,
                         diameter_output_m=0.02, fillet_radius_m=0.003)
    assert preview_case(horn_case(scaled.model_dump()), TI).f_working_Hz == pytest.approx(20e3, rel=1e-9)
    exp = ExponentialHorn(length_m=0.15, diameter_input_m=0.04, diameter_output_m=0.02)
    r = preview_case(horn_case(exp.model_dump(), target=20e3), TI)
    tuned = exp.model_copy(update={"length_m": r.resonant_length_m})
    assert preview_case(horn_case(tuned.model_dump()), TI).f_working_Hz == pytest.approx(20e3, rel=1e-12)


def test_example_cases_run():
    stepped = preview_case(load_case(EXAMPLES / "horn_20khz_stepped_modal.toml"), TI)
    exponential = preview_case(load_case(EXAMPLES / "horn_exponential_harmonic.toml"), TI)
    assert stepped.geometry_kind == "stepped" and 3.9 < stepped.gain < 4.1
    assert exponential.gain == pytest.approx(2.0, rel=1e-9)


def test_tab_stack_and_mesh_files_are_refused_by_kind():
    stack = load_case(EXAMPLES / "tab_weld_cu_al_transient.toml")
    with pytest.raises(BackendError, match="'tab_stack' needs a 3-D backend"):
        preview_case(stack, TI)
    with pytest.raises(BackendError, match="'mesh_file'"):
        preview_case(SimpleNamespace(geometry=SimpleNamespace(kind="mesh_file")), TI)


def test_as_metrics_uses_registered_names_and_units():
    horn = {"kind": "exponential", "length_m": 0.13, "diameter_input_m": 0.04, "diameter_output_m": 0.02}
    metrics = preview_case(horn_case(horn), TI).as_metrics()
    assert metrics["f_working_Hz"]["unit"] == "Hz" and metrics["gain"]["unit"] == "1"
    assert metrics["max_von_mises_Pa"]["unit"] == "Pa"
    for name, entry in metrics.items():
        assert set(entry) == {"value", "unit"} and math.isfinite(entry["value"])
        assert entry["unit"] == (METRICS[name].unit if name in METRICS else NEW_METRIC_UNITS[name][0])
    assert {"tuning_error_Hz", "resonant_length_m", "fatigue_safety_factor", "node_z_m"} <= set(metrics)


def test_without_a_target_there_is_no_tuning_error():
    horn = {"kind": "cylinder", "length_m": 0.12, "diameter_m": 0.02}
    r = preview_case(horn_case(horn, target=None), TI)
    assert r.tuning_error_Hz is None and r.resonant_length_m is None
    assert "tuning_error_Hz" not in r.as_metrics()
    assert any("no target frequency" in n for n in r.notes)
