"""`weldsim run` / `weldsim resume` end to end with the REAL entry point (weldsim_hpc.run).

Runs the installed `weldsim` script as a subprocess: this test process never imports
mpi4py or dolfinx, and neither does the CLI process that launches mpirun.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from weldsim_hpc.results import read_metrics
from weldsim_hpc.run_paths import RunPaths, iter_runs, read_attempts

ROOT = Path(__file__).resolve().parent.parent
THERMAL = ROOT / "examples" / "tab_weld_cu_al_transient.toml"
WELDSIM = Path(sys.executable).parent / "weldsim"


def weldsim(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(WELDSIM), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def only_run(runs_root: Path) -> RunPaths:
    (paths,) = list(iter_runs(runs_root))
    return paths


def test_weldsim_run_thermal_ci_on_two_ranks(tmp_path):
    out = weldsim("run", THERMAL, "--preset", "ci", "--np", 2, "--out", tmp_path / "runs")
    assert out.returncode == 0, out.stdout + out.stderr
    paths = only_run(tmp_path / "runs")
    metrics = read_metrics(paths)
    assert 293.15 < metrics["T_max_K"].value < 2000.0
    assert metrics["ranks"].value == 2
    assert "T_max_K" in out.stdout and str(paths.fields_pvd) in out.stdout and str(paths.fields_xdmf) in out.stdout
    assert [(a["attempt"], a["exit_code"]) for a in read_attempts(paths)] == [(1, 0)]
    assert json.loads(paths.case_json.read_text())["solver"]["backend"] == "fenicsx"


def test_weldsim_run_unsupported_backend_is_a_clear_error_before_preparing(tmp_path):
    out = weldsim("run", THERMAL, "--preset", "ci", "--backend", "preview", "--out", tmp_path / "runs")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "'preview' does not support analysis 'thermal_transient'" in out.stderr
    assert not (tmp_path / "runs").exists()


def _has_progress_row(runs) -> bool:
    from weldsim_hpc.progress_reader import ProgressReader

    for path in runs.glob("*/progress.h5"):
        try:
            with ProgressReader(path) as reader:
                return bool(reader.poll().rows)
        except Exception:  # noqa: BLE001 — still being created: look again
            return False
    return False


def test_ctrl_c_interrupts_with_exit_4_and_resume_finishes_on_another_rank_count(tmp_path):
    case = tmp_path / "long.toml"
    # 2000 steps: several seconds even where a step takes 2 ms, so Ctrl-C lands mid-run
    long_text = THERMAL.read_text().replace("end_s = 0.5\ndt_s = 0.05", "end_s = 20.0\ndt_s = 0.01")
    assert long_text != THERMAL.read_text()
    case.write_text(long_text)
    runs = tmp_path / "runs"
    proc = subprocess.Popen([str(WELDSIM), "run", str(case), "--preset", "ci", "--np", "2", "--out", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    # the first progress row: the ranks are stepping, their stop handlers installed (a signal
    # that reaches mpirun before it has started the ranks is not passed on)
    while not _has_progress_row(runs) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    paths = only_run(runs)
    assert proc.returncode == 4, stdout + stderr
    assert f"weldsim resume {paths.root}" in stderr
    out = weldsim("resume", paths.root, "--np", 1)
    assert out.returncode == 0, out.stdout + out.stderr
    assert [(a["attempt"], a["exit_code"]) for a in read_attempts(paths)] == [(1, 4), (2, 0)]
    assert read_metrics(paths)["ranks"].value == 1
