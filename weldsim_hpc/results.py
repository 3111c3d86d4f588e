"""The metric registry and results/metrics.json.

Every number a run reports has a registered name, and the name carries its SI unit
(f_working_Hz, max_von_mises_Pa, T_max_K); dimensionless ratios have unit "1". Per-probe
metrics are ``probe.<probe name>.<field>`` (field from PROBE_FIELDS, e.g.
``probe.weld_centre.temperature_K``) and per-mode metrics ``mode.<k>.<field>`` with k = 1,
2, ... in ascending frequency (e.g. ``mode.3.frequency_Hz``). Values are finite floats in
SI units: kelvin, 0-peak amplitudes in metres, stresses in pascals.

metrics.json holds ``{name: {"value": float, "unit": str}}``, sorted by name, written
atomically; `metrics_table_rows` adds the engineer's units (kHz, MPa, °C, µm).

Example::

    write_metrics(paths, [metric("f_working_Hz", 20_012.5), metric("gain", 1.98)])
    read_metrics(paths)["f_working_Hz"].unit   # 'Hz'
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any, Union

from .errors import WeldSimError
from .run_paths import RunPaths, write_json_atomic

# engineering display: (factor, offset, unit) with shown = value * factor + offset
_KHZ, _MPA, _CELSIUS, _MICRON, _PERCENT = (1e-3, 0.0, "kHz"), (1e-6, 0.0, "MPa"), (1.0, -273.15, "°C"), \
    (1e6, 0.0, "µm"), (100.0, 0.0, "%")


class MetricError(WeldSimError):
    """An unknown metric name or an unusable value."""


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: SI unit ("1" for ratios), meaning, and its engineering display."""

    unit: str
    description: str
    display: tuple[float, float, str] | None = None


@dataclass(frozen=True)
class Metric:
    """One reported value: registered name, finite float in SI, its unit."""

    name: str
    value: float
    unit: str


METRICS: dict[str, MetricSpec] = {
    # modal / tuning
    "f_working_Hz": MetricSpec("Hz", "frequency of the working (longitudinal) mode", _KHZ),
    "tuning_error_Hz": MetricSpec("Hz", "working frequency minus the target frequency"),
    "f_1d_estimate_Hz": MetricSpec("Hz", "1-D (Webster) estimate of the working frequency, beside the 3-D value", _KHZ),
    "mode_separation_Hz": MetricSpec("Hz", "distance from the working mode to the nearest other mode"),
    "modes_found": MetricSpec("1", "number of converged eigenmodes"),
    "mode_separation_flag": MetricSpec("1", "1 when another mode lies within 500 Hz of the working mode"),
    "modes_near_working": MetricSpec("1", "number of other modes within ±2 kHz of the working mode"),
    "resonant_length_m": MetricSpec("m", "horn length (same profile, axially scaled) that resonates at the target"),
    "node_z_m": MetricSpec("m", "axial position of the nodal plane (u = 0) of the working mode"),
    "peak_stress_z_m": MetricSpec("m", "axial position of the peak axial stress of the working mode"),
    # harmonic
    "gain": MetricSpec("1", "mean axial |u| on output_face / input amplitude at the working frequency"),
    "uniformity": MetricSpec("1", "min / max axial |u| over output_face", _PERCENT),
    "input_amplitude_0pk_m": MetricSpec("m", "axial input amplitude (0-peak)", _MICRON),
    "output_amplitude_0pk_m": MetricSpec("m", "mean axial output-face amplitude (0-peak)", _MICRON),
    "input_force_0pk_N": MetricSpec("N", "axial force amplitude needed to drive input_face at the working frequency"),
    "harmonic_modes_used": MetricSpec("1", "fixed-input modes in the modal superposition"),
    # structural
    "max_displacement_m": MetricSpec("m", "largest displacement magnitude (0-peak when dynamic)", _MICRON),
    "max_von_mises_Pa": MetricSpec("Pa", "peak von Mises stress (over a cycle when dynamic)", _MPA),
    "von_mises_over_yield": MetricSpec("1", "peak von Mises stress / yield strength of its material"),
    "fatigue_safety_factor": MetricSpec("1", "fatigue strength (R = -1) / peak stress amplitude"),
    # thermal
    "T_max_K": MetricSpec("K", "highest temperature", _CELSIUS),
    "T_min_K": MetricSpec("K", "lowest temperature", _CELSIUS),
    "T_max_over_solidus": MetricSpec("1", "highest temperature / solidus of its material (both in K)"),
    "weld_heat_flux_W_m2": MetricSpec("W/m^2", "heat flux into the weld interface"),
    "energy_in_J": MetricSpec("J", "heat put into the weld over the weld time"),
    # run
    "compute_time_s": MetricSpec("s", "wall time of the solve"),
    "n_cells": MetricSpec("1", "cells of the mesh"),
    "n_dofs": MetricSpec("1", "degrees of freedom (global)"),
    "n_time_steps": MetricSpec("1", "time steps taken"),
    "ranks": MetricSpec("1", "MPI ranks the run used"),
}

PROBE_FIELDS: dict[str, MetricSpec] = {
    "temperature_K": MetricSpec("K", "temperature", _CELSIUS),
    "ux_m": MetricSpec("m", "displacement x", _MICRON),
    "uy_m": MetricSpec("m", "displacement y", _MICRON),
    "uz_m": MetricSpec("m", "displacement z (axial)", _MICRON),
    "displacement_m": MetricSpec("m", "displacement magnitude", _MICRON),
    "von_mises_Pa": MetricSpec("Pa", "von Mises stress", _MPA),
    **{f"s{c}_Pa": MetricSpec("Pa", f"stress component σ_{c}", _MPA)
       for c in ("xx", "yy", "zz", "xy", "yz", "xz")},
}
PROBE_QUANTITIES: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature_K",),
    "displacement": ("ux_m", "uy_m", "uz_m", "displacement_m"),
    "stress": ("sxx_Pa", "syy_Pa", "szz_Pa", "sxy_Pa", "syz_Pa", "sxz_Pa"),
    "von_mises": ("von_mises_Pa",),
}
"""A case probe's `fields` entry -> the probe metric fields it yields."""

MODE_FIELDS: dict[str, MetricSpec] = {
    "frequency_Hz": MetricSpec("Hz", "eigenfrequency", _KHZ),
    "axial_fraction": MetricSpec("1", "share of the mode's kinetic energy in axial (z) motion"),
    "torsional_fraction": MetricSpec("1", "share of the mode's kinetic energy in circumferential motion"),
    "class_code": MetricSpec("1", "mode class: 0 other, 1 longitudinal, 2 flexural, 3 torsional"),
    "separation_Hz": MetricSpec("Hz", "this mode's frequency minus the working frequency"),
}

_PROBE = re.compile(r"probe\.([A-Za-z][A-Za-z0-9_]{0,63})\.([A-Za-z0-9_]+)")
_MODE = re.compile(r"mode\.([1-9][0-9]{0,3})\.([A-Za-z0-9_]+)")


def metric_spec(name: str) -> MetricSpec:
    """The registry entry for `name`; MetricError listing the valid names otherwise."""
    if not isinstance(name, str):
        raise MetricError(f"a metric name must be a string, got {name!r}")
    if name in METRICS:
        return METRICS[name]
    for pattern, fields, what in ((_PROBE, PROBE_FIELDS, "probe"), (_MODE, MODE_FIELDS, "mode")):
        match = pattern.fullmatch(name)
        if match:
            if match.group(2) in fields:
                spec = fields[match.group(2)]
                return MetricSpec(spec.unit, f"{what} {match.group(1)}: {spec.description}", spec.display)
            raise MetricError(f"unknown {what} field '{match.group(2)}' in metric '{name}' "
                              f"(valid: {', '.join(fields)})")
    raise MetricError(f"unknown metric '{name}' (valid: {', '.join(METRICS)}, "
                      f"probe.<name>.<{'|'.join(PROBE_FIELDS)}>, mode.<k>.<{'|'.join(MODE_FIELDS)}>)")


def metric(name: str, value: float) -> Metric:
    """A checked Metric: registered name, finite real value (numpy scalars accepted)."""
    spec = metric_spec(name)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise MetricError(f"metric '{name}': the value must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise MetricError(f"metric '{name}': the value must be finite, got {value!r} "
                          "(a failed evaluation is an error, not a metric)")
    return Metric(name, value, spec.unit)


def probe_metric_name(probe: str, field: str) -> str:
    """'probe.<probe>.<field>', checked against the registry."""
    name = f"probe.{probe}.{field}"
    metric_spec(name)
    return name


MetricsInput = Union[Mapping[str, Union[float, Metric, Mapping[str, Any]]], Iterable[Metric]]
"""name -> value (SI), name -> Metric, name -> {"value", "unit"} (as metrics.json), or Metrics."""


def _as_metrics(metrics: MetricsInput) -> dict[str, Metric]:
    items = metrics.items() if isinstance(metrics, Mapping) else ((m.name, m) for m in metrics)
    out: dict[str, Metric] = {}
    for name, item in items:
        if isinstance(item, Metric) and item.name != name:
            raise MetricError(f"metric '{item.name}' given under the name '{name}'")
        if isinstance(item, Mapping) and set(item) != {"value", "unit"}:
            raise MetricError(f"metric '{name}' must be a number, a Metric or {{\"value\", \"unit\"}}, got {item!r}")
        unit = item.unit if isinstance(item, Metric) else item["unit"] if isinstance(item, Mapping) else None
        value = item.value if isinstance(item, Metric) else item["value"] if isinstance(item, Mapping) else item
        if name in out:
            raise MetricError(f"metric '{name}' given twice")
        out[name] = metric(name, value)
        if unit is not None and unit != out[name].unit:
            raise MetricError(f"metric '{name}' is in '{unit}', the registry says '{out[name].unit}'")
    return out


def _metrics_path(paths_or_path: RunPaths | str | os.PathLike) -> Path:
    return paths_or_path.metrics_json if isinstance(paths_or_path, RunPaths) else Path(paths_or_path)


def write_metrics(paths_or_path: RunPaths | str | os.PathLike,
                  metrics: MetricsInput) -> Path:
    """Write {name: {value, unit}} (sorted) to results/metrics.json (or the given file)."""
    checked = _as_metrics(metrics)
    path = _metrics_path(paths_or_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, {n: {"value": m.value, "unit": m.unit} for n, m in sorted(checked.items())})


def read_metrics(paths_or_path: RunPaths | str | os.PathLike) -> dict[str, Metric]:
    """metrics.json back as name -> Metric; names and units are checked against the registry."""
    path = _metrics_path(paths_or_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MetricError(f"{path}: no such file (has the run finished?)") from None
    except (OSError, ValueError) as exc:
        raise MetricError(f"{path}: unreadable metrics file ({exc})") from None
    if not isinstance(data, dict):
        raise MetricError(f"{path}: expected an object of name -> {{value, unit}}")
    out: dict[str, Metric] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != {"value", "unit"}:
            raise MetricError(f"{path}: metric '{name}' must be {{\"value\": number, \"unit\": text}}")
        checked = metric(name, entry["value"])
        if entry["unit"] != checked.unit:
            raise MetricError(f"{path}: metric '{name}' is in '{entry['unit']}', the registry says '{checked.unit}'")
        out[name] = checked
    return out


METRICS_TABLE_COLUMNS = ("metric", "value (SI)", "engineering")


def _num(x: float) -> str:
    return f"{x:.6g}"


def metrics_table_rows(metrics: MetricsInput) -> list[tuple[str, str, str]]:
    """Rows (name, SI value with unit, engineering value) for the CLI, sorted by name.

    e.g. ("max_von_mises_Pa", "1.2345e+08 Pa", "123.45 MPa"), ("T_max_K", "573.15 K", "300 °C");
    the engineering column is empty where SI is what engineers read.
    """
    rows = []
    for name, m in sorted(_as_metrics(metrics).items()):
        spec = metric_spec(name)
        si = _num(m.value) + ("" if m.unit == "1" else f" {m.unit}")
        eng = ""
        if spec.display is not None:
            factor, offset, unit = spec.display
            eng = f"{_num(m.value * factor + offset)} {unit}"
        rows.append((name, si, eng))
    return rows
