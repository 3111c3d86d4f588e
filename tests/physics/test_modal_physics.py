"""Mode classification, working-mode pick, separation and metrics (physics/modal.py)."""

from __future__ import annotations

import pytest

from weldsim_hpc.physics.modal import (
    Mode,
    ModeClass,
    ModeFractions,
    classify,
    modal_summary,
    modes_table,
    working_mode,
)
from weldsim_hpc.results import metric_spec

LONG = ModeFractions(0.99, 0.0, 0.0)
TORS = ModeFractions(0.0, 1.0, 0.0)
FLEX_SLENDER = ModeFractions(0.04, 0.49, 0.99, 0.04)   # Ø10 bar, measured by the backend
FLEX_THICK = ModeFractions(0.246, 0.415, 0.977, 0.245)  # Ø40 bar at 20.1 kHz, measured
BREATHING = ModeFractions(0.3, 0.0, 0.02)


@pytest.mark.parametrize("fr, expected", [
    (LONG, ModeClass.LONGITUDINAL), (TORS, ModeClass.TORSIONAL),
    (FLEX_SLENDER, ModeClass.FLEXURAL), (FLEX_THICK, ModeClass.FLEXURAL),
    (BREATHING, ModeClass.OTHER),
    (ModeFractions(0.8, 0.0, 0.0), ModeClass.LONGITUDINAL),          # thresholds inclusive
    (ModeFractions(0.0, 0.8, 0.0), ModeClass.TORSIONAL),
    (ModeFractions(0.2, 0.0, 0.5), ModeClass.FLEXURAL),
    (ModeFractions(0.2, 0.0, 0.49), ModeClass.OTHER),                 # slice means too weak
    (ModeFractions(0.25, 0.0, 0.99), ModeClass.OTHER),                # lateral 0.75, no tilt
    (ModeFractions(0.5, 0.5, 0.0), ModeClass.OTHER),
])
def test_classify(fr, expected):
    assert classify(fr) is expected


def test_tilt_zero_is_the_plain_lateral_rule():
    """Without tilt: flexural iff lateral ≥ 0.8 and bending ≥ 0.5."""
    for ax in (0.0, 0.1, 0.19, 0.2, 0.21, 0.5):
        for bend in (0.0, 0.49, 0.5, 1.0):
            fr = ModeFractions(ax, 0.0, bend)
            assert (classify(fr) is ModeClass.FLEXURAL) == (1 - ax >= 0.8 - 1e-12 and bend >= 0.5)


def test_fractions_validated():
    with pytest.raises(ValueError, match="axial"):
        ModeFractions(1.5, 0.0, 0.0)
    with pytest.raises(ValueError, match="bending"):
        ModeFractions(0.5, 0.0, float("nan"))


def modes(*spec):
    return [Mode(k, f, fr) for k, (f, fr) in enumerate(spec, start=1)]


def test_working_mode_is_the_longitudinal_nearest_the_target_not_the_lowest():
    ms = modes((9_000.0, LONG), (12_000.0, TORS), (19_700.0, FLEX_SLENDER), (20_300.0, LONG),
               (38_000.0, LONG))
    assert working_mode(ms, 20_000.0).index == 4
    assert working_mode(ms, 10_000.0).index == 1
    assert working_mode(modes((20_000.0, TORS)), 20_000.0) is None


def test_summary_separation_flag_and_metrics():
    ms = modes((12_207.0, TORS), (19_852.0, LONG), (20_136.0, FLEX_THICK), (20_136.3, FLEX_THICK),
               (24_415.0, TORS))
    s = modal_summary(ms, 20_000.0)
    assert s.working.index == 2
    assert s.tuning_error_Hz == pytest.approx(-148.0)
    assert s.separation_Hz == pytest.approx(284.0)
    assert s.separation_flag and s.nearest.index == 3
    assert [m.index for m in s.near] == [3, 4]
    assert len(s.warnings) == 1 and "284.0 Hz" in s.warnings[0] and "flexural" in s.warnings[0]
    m = s.as_metrics()
    assert m["f_working_Hz"] == 19_852.0 and m["mode_separation_flag"] == 1.0
    assert m["modes_found"] == 5.0 and m["modes_near_working"] == 2.0
    assert m["mode.3.class_code"] == ModeClass.FLEXURAL.code == 2
    assert m["mode.3.separation_Hz"] == pytest.approx(284.0)
    assert "mode.1.class_code" not in m and "mode.5.class_code" not in m   # beyond ±2 kHz
    assert all(isinstance(v, float) for v in m.values())
    # the names the registry already knows
    for name in ("f_working_Hz", "tuning_error_Hz", "mode_separation_Hz", "modes_found",
                 "mode.1.frequency_Hz", "mode.1.axial_fraction"):
        metric_spec(name)
    rows = modes_table(s)
    assert rows[1]["working"] and rows[2]["class"] == "flexural" and rows[2]["near_working"]


def test_separation_above_limit_not_flagged():
    s = modal_summary(modes((19_000.0, FLEX_SLENDER), (20_000.0, LONG)), 20_000.0)
    assert s.separation_Hz == 1000.0 and not s.separation_flag and not s.warnings
    assert s.as_metrics()["mode_separation_flag"] == 0.0


def test_no_longitudinal_mode_warns_and_reports_modes_only():
    s = modal_summary(modes((19_000.0, TORS)), 20_000.0)
    assert s.working is None and s.warnings
    assert set(s.as_metrics()) == {"modes_found", "mode.1.frequency_Hz", "mode.1.axial_fraction",
                                   "mode.1.torsional_fraction"}
    with pytest.raises(ValueError):
        modal_summary([], 0.0)


def test_single_mode_has_no_separation():
    s = modal_summary(modes((20_000.0, LONG)), 20_000.0)
    assert s.separation_Hz is None and not s.separation_flag
    assert "mode_separation_Hz" not in s.as_metrics()
