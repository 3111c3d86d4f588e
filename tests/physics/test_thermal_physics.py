"""physics.thermal: weld heat flux models, thermal metrics and the time grid (no dolfinx)."""

from __future__ import annotations

import math

import pytest

from weldsim_hpc.case import WeldParameters
from weldsim_hpc.physics import thermal as th


def test_friction_flux_domain_notes_example():
    """A = 15 µm, f = 20 kHz, μ = 0.3, p = 10 MPa -> 3.6 MW/m² (DOMAIN-NOTES)."""
    q = th.friction_heat_flux_W_m2(0.3, 10e6, 20e3, 15e-6)
    assert q == pytest.approx(3.6e6, rel=1e-12)
    weld = WeldParameters(frequency_Hz=20e3, pressure_Pa=10e6, slip_amplitude_0pk_m=15e-6,
                          friction_coefficient=0.3)
    assert th.weld_heat_model(weld) == "friction"
    assert th.weld_heat_flux_W_m2(weld) == pytest.approx(3.6e6, rel=1e-12)
    assert th.weld_heat_flux_W_m2(weld, 1.0) == pytest.approx(3.6e6, rel=1e-12)  # area unused


def test_power_flux_uses_the_measured_area():
    weld = WeldParameters(power_W=2000.0, heat_fraction=0.4, weld_time_s=0.2)
    assert th.weld_heat_model(weld) == "power"
    area = 6e-3 * 4e-3
    q = th.weld_heat_flux_W_m2(weld, area)
    assert q == pytest.approx(0.4 * 2000.0 / area, rel=1e-12)
    assert q * area * weld.weld_time_s == pytest.approx(160.0, rel=1e-12)  # η·P·t joules
    with pytest.raises(ValueError, match="weld_interface area"):
        th.weld_heat_flux_W_m2(weld)


@pytest.mark.parametrize("args", [(0.0, 1e3, 1e-5), (0.5, -1.0, 1e-5), (0.5, 1e3, 0.0), (1.5, 1e3, 1e-5),
                                  (0.5, math.nan, 1e-5)])
def test_power_flux_rejects_bad_input(args):
    with pytest.raises(ValueError):
        th.power_heat_flux_W_m2(*args)


def test_friction_flux_rejects_non_positive():
    with pytest.raises(ValueError, match="pressure_Pa"):
        th.friction_heat_flux_W_m2(0.3, 0.0, 20e3, 15e-6)


def test_metrics_ratio_and_warning():
    m = th.thermal_metrics({"tab": 700.0, "anvil": 400.0}, {"tab": 1356.0, "anvil": 1700.0}, 123.0)
    assert m.T_max_K == 700.0 and m.hottest_volume == "tab"
    assert m.T_max_over_solidus == pytest.approx(700 / 1356)
    assert m.warnings == ()
    assert m.as_metrics()["energy_in_J"] == {"value": 123.0, "unit": "J"}
    hot = th.thermal_metrics({"foil_stack": 700.0}, {"foil_stack": 800.0})  # 0.875 > 0.8
    assert len(hot.warnings) == 1 and "foil_stack" in hot.warnings[0] and "0.88" in hot.warnings[0]
    assert "energy_in_J" not in hot.as_metrics()
    with pytest.raises(ValueError, match="no solidus"):
        th.thermal_metrics({"tab": 500.0}, {})


def test_time_grid_lands_on_the_weld_end():
    grid = th.time_grid(0.5, 0.07, (0.3,))
    assert grid[0] == 0.0 and grid[-1] == 0.5
    assert 0.3 in grid
    steps = [b - a for a, b in zip(grid, grid[1:])]
    assert max(steps) <= 0.07 + 1e-15
    assert len(grid) == 1 + math.ceil(0.3 / 0.07) + math.ceil(0.2 / 0.07)
    # exact multiples do not gain a sliver step; breakpoints outside (0, end) are ignored
    assert len(th.time_grid(1.0, 0.1, (0.0, 2.0))) == 11
    assert th.time_grid(0.3, 0.1, (0.3,))[-1] == 0.3
