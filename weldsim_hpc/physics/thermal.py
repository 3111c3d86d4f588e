"""Thermal analysis physics, backend-independent: the weld heat flux and the thermal metrics.

SI units: W/m² for fluxes, m² for areas, K for temperatures, J for energies.

Weld heating (see DESIGN.md, "Physics notes"). With a relative slip x(t) = A·sin(2πft)
the mean slip speed over a cycle is 4·A·f, so the friction flux is

    q = μ · p · 4 · f · A_slip                         (friction model)

and with the welder's logged power P, a fraction η of which heats the interface,

    q = η · P / A_weld                                 (power model)

where A_weld is the MEASURED area of the `weld_interface` surface of the mesh (the solver
integrates it), so that the heat put in is exactly η·P per second whatever the mesh.
The flux is the total heat released at the interface, per unit interface area; the solver
applies it once as an interior-facet source and lets conduction split it between sides.

Example::

    >>> friction_heat_flux_W_m2(0.3, 10e6, 20e3, 15e-6)   # DOMAIN-NOTES example
    3600000.0
    >>> power_heat_flux_W_m2(0.5, 1000.0, 24e-6)          # 500 W over 24 mm²
    20833333.333333332
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

#: T_max / T_solidus (kelvin over kelvin) above which the metrics carry a warning
HOMOLOGOUS_WARNING = 0.8


def friction_heat_flux_W_m2(friction_coefficient: float, pressure_Pa: float,
                            frequency_Hz: float, slip_amplitude_0pk_m: float) -> float:
    """q = μ·p·4·f·A (W/m²); A is the 0-peak relative slip amplitude in m."""
    for name, value in (("friction_coefficient", friction_coefficient), ("pressure_Pa", pressure_Pa),
                        ("frequency_Hz", frequency_Hz), ("slip_amplitude_0pk_m", slip_amplitude_0pk_m)):
        _require_positive(name, value)
    return friction_coefficient * pressure_Pa * 4.0 * frequency_Hz * slip_amplitude_0pk_m


def power_heat_flux_W_m2(heat_fraction: float, power_W: float, weld_area_m2: float) -> float:
    """q = η·P/A_weld (W/m²): η the fraction of the welder's power P (W) that heats the
    interface, A_weld its area in m²."""
    if not 0.0 < heat_fraction <= 1.0:
        raise ValueError(f"heat_fraction must lie in (0, 1], got {heat_fraction!r}")
    _require_positive("power_W", power_W)
    _require_positive("weld_area_m2", weld_area_m2)
    return heat_fraction * power_W / weld_area_m2


def weld_heat_flux_W_m2(weld, weld_area_m2: float | None = None) -> float:
    """The interface flux (W/m²) for a `case.WeldParameters`, by whichever model it gives.

    The power model needs `weld_area_m2` (the measured weld_interface area); the friction
    model ignores it.
    """
    if weld.power_W is not None:
        if weld_area_m2 is None:
            raise ValueError("the power model q = η·P/A_weld needs the weld_interface area "
                             "(weld_area_m2): measure it on the mesh")
        return power_heat_flux_W_m2(weld.heat_fraction, weld.power_W, weld_area_m2)
    return friction_heat_flux_W_m2(weld.friction_coefficient, weld.pressure_Pa,
                                   weld.frequency_Hz, weld.slip_amplitude_0pk_m)


def weld_heat_model(weld) -> str:
    """'power' or 'friction': which model a WeldParameters uses."""
    return "power" if weld.power_W is not None else "friction"


@dataclass(frozen=True)
class ThermalMetrics:
    """What a thermal run reports (metrics.json names: T_max_K, T_max_over_solidus,
    energy_in_J).

    T_max_K:            peak temperature over the body and over time, K
    T_max_over_solidus: max over volumes of (peak T in the volume) / (its solidus), both K
    hottest_volume:     the volume where that ratio is reached
    energy_in_J:        heat put in by the prescribed inputs (weld interface, heat flux,
                        heat sources) over the run, J; None for a steady analysis
    warnings:           readable warnings (ratio above HOMOLOGOUS_WARNING)
    """

    T_max_K: float
    T_max_over_solidus: float
    hottest_volume: str
    energy_in_J: float | None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def as_metrics(self) -> dict[str, dict[str, float | str]]:
        """name -> {value, unit}, as results/metrics.json stores them."""
        out: dict[str, dict[str, float | str]] = {
            "T_max_K": {"value": self.T_max_K, "unit": "K"},
            "T_max_over_solidus": {"value": self.T_max_over_solidus, "unit": "1"},
        }
        if self.energy_in_J is not None:
            out["energy_in_J"] = {"value": self.energy_in_J, "unit": "J"}
        return out


def thermal_metrics(T_max_by_volume_K: Mapping[str, float], solidus_by_volume_K: Mapping[str, float],
                    energy_in_J: float | None = None) -> ThermalMetrics:
    """Metrics from the peak temperature of each volume group and its material's solidus.

    Warns when a volume's peak exceeds HOMOLOGOUS_WARNING (0.8) of its solidus: the
    linear, room-temperature properties are then far off, and the material softens.
    """
    if not T_max_by_volume_K:
        raise ValueError("no volumes: T_max_by_volume_K is empty")
    missing = sorted(set(T_max_by_volume_K) - set(solidus_by_volume_K))
    if missing:
        raise ValueError(f"no solidus for volumes {missing}")
    ratios = {v: T / solidus_by_volume_K[v] for v, T in T_max_by_volume_K.items()}
    hottest = max(ratios, key=ratios.__getitem__)
    warnings = tuple(
        f"{v}: peak temperature {T_max_by_volume_K[v]:.1f} K is {r:.2f} of the solidus "
        f"({solidus_by_volume_K[v]:.1f} K), above {HOMOLOGOUS_WARNING}: room-temperature "
        "properties no longer hold; lower the heat input or shorten the weld"
        for v, r in sorted(ratios.items()) if r > HOMOLOGOUS_WARNING)
    return ThermalMetrics(max(T_max_by_volume_K.values()), ratios[hottest], hottest,
                          energy_in_J, warnings)


def _require_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def time_grid(end_s: float, dt_s: float, breakpoints: tuple[float, ...] = ()) -> list[float]:
    """Times 0 = t_0 < t_1 < … < t_n = end_s of a transient run (s).

    Every breakpoint inside (0, end_s) — the weld end time — is a grid point: the run is
    split into segments at the breakpoints, and each segment of length L takes
    ceil(L/dt_s) equal steps (never longer than dt_s). Times are t_seg0 + k·dt_seg,
    never accumulated, so t_n is end_s exactly.
    """
    _require_positive("end_s", end_s)
    _require_positive("dt_s", dt_s)
    cuts = sorted({0.0, float(end_s), *(float(b) for b in breakpoints if 0.0 < b < end_s)})
    times = [0.0]
    for a, b in zip(cuts[:-1], cuts[1:]):
        n = max(1, math.ceil((b - a) / dt_s * (1 - 1e-12)))
        step = (b - a) / n
        times += [a + k * step for k in range(1, n)] + [b]
    return times
