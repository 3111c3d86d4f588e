"""The metric registry: known names only, finite values, units from one place; metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weldsim_hpc.results import (
    METRICS,
    PROBE_FIELDS,
    PROBE_QUANTITIES,
    Metric,
    MetricError,
    metric,
    metric_spec,
    metrics_table_rows,
    probe_metric_name,
    read_metrics,
    write_metrics,
)
from weldsim_hpc.run_paths import RunPaths

REQUIRED = {
    "f_working_Hz": "Hz", "tuning_error_Hz": "Hz", "gain": "1", "uniformity": "1", "max_von_mises_Pa": "Pa",
    "von_mises_over_yield": "1", "fatigue_safety_factor": "1", "T_max_K": "K", "T_max_over_solidus": "1",
    "max_displacement_m": "m", "compute_time_s": "s", "energy_in_J": "J",
}


def test_registry_has_the_design_metrics_with_si_units():
    for name, unit in REQUIRED.items():
        assert METRICS[name].unit == unit and METRICS[name].description


def test_every_suffixed_name_carries_its_unit():
    for name, spec in {**METRICS, **PROBE_FIELDS}.items():
        suffix = {"Hz": "_Hz", "Pa": "_Pa", "K": "_K", "m": "_m", "s": "_s", "J": "_J", "W/m^2": "_W_m2"}.get(spec.unit)
        if suffix:
            assert name.endswith(suffix), name


def test_metric_checks_name_and_value():
    m = metric("f_working_Hz", np.float64(20012.5))
    assert m == Metric("f_working_Hz", 20012.5, "Hz") and type(m.value) is float
    assert metric("n_cells", np.int64(12)).value == 12.0
    with pytest.raises(MetricError, match="unknown metric 'f_work_Hz'.*f_working_Hz"):
        metric("f_work_Hz", 1.0)
    for bad in (float("nan"), float("inf"), -np.inf, np.float32("nan")):
        with pytest.raises(MetricError, match="finite"):
            metric("gain", bad)
    for bad in (True, "2.0", None, [1.0], 1 + 2j):
        with pytest.raises(MetricError, match="real number"):
            metric("gain", bad)


def test_probe_and_mode_patterns():
    assert metric("probe.weld_centre.temperature_K", 500.0).unit == "K"
    assert metric("probe.tip.sxy_Pa", 1e6).unit == "Pa"
    assert metric("mode.3.frequency_Hz", 19_500.0).unit == "Hz"
    assert "weld_centre" in metric_spec("probe.weld_centre.uz_m").description
    with pytest.raises(MetricError, match="unknown probe field 'temperature'.*temperature_K"):
        metric("probe.weld_centre.temperature", 1.0)
    for bad in ("probe..temperature_K", "probe.1tip.temperature_K", "probe.a.b.temperature_K",
                "mode.0.frequency_Hz", "mode.x.frequency_Hz", "mode.1.gain", "probe.tip"):
        with pytest.raises(MetricError):
            metric(bad, 1.0)
    assert probe_metric_name("weld_centre", "temperature_K") == "probe.weld_centre.temperature_K"
    for fields in PROBE_QUANTITIES.values():
        assert set(fields) <= set(PROBE_FIELDS)


def test_write_and_read_metrics_json(tmp_path):
    paths = RunPaths.for_id(tmp_path, "aaaaaaaaaaaa")
    written = write_metrics(paths, {"gain": 1.98, "f_working_Hz": 20012.5, "probe.tip.uz_m": 1.5e-5})
    assert written == paths.metrics_json
    data = json.loads(paths.metrics_json.read_text())
    assert list(data) == sorted(data)
    assert data["f_working_Hz"] == {"value": 20012.5, "unit": "Hz"}
    assert data["gain"] == {"value": 1.98, "unit": "1"}
    back = read_metrics(paths)
    assert back == read_metrics(paths.metrics_json)
    assert back["probe.tip.uz_m"] == Metric("probe.tip.uz_m", 1.5e-5, "m")
    assert [f.name for f in paths.results_dir.iterdir()] == ["metrics.json"]


def test_write_metrics_from_metric_objects_and_refusals(tmp_path):
    target = tmp_path / "m.json"
    write_metrics(target, [metric("T_max_K", 600.0), metric("compute_time_s", 3.5)])
    assert read_metrics(target)["T_max_K"].value == 600.0
    with pytest.raises(MetricError, match="twice"):
        write_metrics(target, [metric("gain", 1.0), metric("gain", 2.0)])
    with pytest.raises(MetricError, match="finite"):
        write_metrics(target, {"gain": float("nan")})
    with pytest.raises(MetricError, match="unknown metric"):
        write_metrics(target, {"bogus": 1.0})
    with pytest.raises(MetricError, match="registry says 'K'"):
        write_metrics(target, {"T_max_K": {"value": 600.0, "unit": "degC"}})
    assert set(read_metrics(target)) == {"T_max_K", "compute_time_s"}  # untouched by failures
    # the {value, unit} form that metrics.json holds (and physics modules return) is accepted
    write_metrics(target, {"T_max_K": {"value": 610.0, "unit": "K"}, "gain": metric("gain", 2.0)})
    assert read_metrics(target)["T_max_K"].value == 610.0


def test_read_metrics_refuses_bad_files(tmp_path):
    target = tmp_path / "m.json"
    with pytest.raises(MetricError, match="no such file"):
        read_metrics(target)
    target.write_text(json.dumps({"gain": {"value": 1.0, "unit": "Hz"}}))
    with pytest.raises(MetricError, match="registry says '1'"):
        read_metrics(target)
    target.write_text(json.dumps({"gain": 1.0}))
    with pytest.raises(MetricError, match="value"):
        read_metrics(target)
    target.write_text('{"gain": {"value": NaN, "unit": "1"}}')
    with pytest.raises(MetricError, match="finite"):
        read_metrics(target)


def test_table_rows_show_engineering_units():
    rows = {r[0]: r for r in metrics_table_rows({
        "f_working_Hz": 20012.5, "max_von_mises_Pa": 1.2345e8, "T_max_K": 573.15, "gain": 2.0,
        "max_displacement_m": 3e-5, "uniformity": 0.93, "probe.weld_centre.temperature_K": 373.15})}
    assert rows["f_working_Hz"] == ("f_working_Hz", "20012.5 Hz", "20.0125 kHz")
    assert rows["max_von_mises_Pa"][1:] == ("1.2345e+08 Pa", "123.45 MPa")
    assert rows["T_max_K"][1:] == ("573.15 K", "300 °C")
    assert rows["gain"][1:] == ("2", "")
    assert rows["max_displacement_m"][2] == "30 µm"
    assert rows["uniformity"][2] == "93 %"
    assert rows["probe.weld_centre.temperature_K"][2] == "100 °C"
    assert list(rows) == sorted(rows)
