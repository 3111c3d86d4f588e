"""`weldsim submit|status|watch|cancel|logs|agent` through the installed console script,
as subprocesses, with REAL runs (the transient thermal example at preset ci, 2 ranks).

The agent daemon a `weldsim submit` starts outlives that command; the tracker stops it at
the end and fails the test if any process (agent, mpirun, ranks) is left.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from weldsim_hpc.executors.record import read_record
from weldsim_hpc.prepare import prepare_run
from weldsim_hpc.run_paths import RunPaths, is_run_id, read_attempts
from weldsim_hpc.states import RunState

from ._local_helpers import (  # noqa: F401  (tracker is a fixture)
    THERMAL,
    WELDSIM,
    ci_case,
    long_case_toml,
    session_processes,
    tracker,
    wait_gone,
    wait_running,
)

pytestmark = pytest.mark.timeout(120)  # each test is bounded; real runs get REAL
REAL = pytest.mark.timeout(420)


def weldsim(*args, timeout: float = 300, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250", **env_vars}  # a wide table: run ids and states are never cut
    return subprocess.run([str(WELDSIM), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def clean(out: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    return out


def submit(case, root, *extra) -> tuple[RunPaths, subprocess.CompletedProcess, float]:
    began = time.monotonic()
    out = clean(weldsim("submit", case, "--preset", "ci", "--executor", "local", "--ntasks", 2,
                        "--runs-root", root, *extra))
    took = time.monotonic() - began
    assert out.returncode == 0, out.stdout + out.stderr
    run_id = out.stdout.strip()
    assert is_run_id(run_id), out.stdout
    return RunPaths.for_id(root, run_id), out, took


@REAL
def test_submit_returns_at_once_then_status_watch_and_logs(tracker):
    root = tracker.root()
    paths, out, took = submit(THERMAL, root)
    state = read_record(paths).state  # right after submit returned: handed over, not done
    tracker.remember_agent_of(root)
    assert state in (RunState.QUEUED, RunState.RUNNING), state
    assert took < 90, took
    assert f"submitted to the local executor (2 rank(s)); follow it with: weldsim watch {paths.run_id}" in out.stderr
    assert read_record(paths).resources.ntasks == 2

    status = clean(weldsim("status", "--runs-root", root))
    assert status.returncode == 0 and paths.run_id in status.stdout and "local" in status.stdout
    for column in ("run", "executor", "state", "progress", "phase", "elapsed", "attempts"):
        assert column in status.stdout

    watch = clean(weldsim("watch", paths.run_id, "--runs-root", root))
    assert watch.returncode == 0, watch.stdout + watch.stderr
    assert f"run {paths.run_id}: completed" in watch.stdout
    assert paths.metrics_json.is_file()

    one = clean(weldsim("status", paths.run_id, "--runs-root", root))
    assert one.returncode == 0
    row = next(line for line in one.stdout.splitlines() if paths.run_id in line)
    assert "completed" in row and "100%" in row and "local" in row

    logs = clean(weldsim("logs", paths.run_id, "--runs-root", root))
    assert logs.returncode == 0 and "== solver.log ==" in logs.stdout and "completed" in logs.stdout
    assert "== launcher.log ==" in logs.stdout and "weldsim_hpc.run" in logs.stdout
    assert [(a["attempt"], a["exit_code"]) for a in read_attempts(paths)] == [(1, 0)]

    # the files speak without an agent too
    assert clean(weldsim("agent", "stop", "--runs-root", root)).returncode == 0
    assert "== solver.log ==" in clean(weldsim("logs", paths.run_id, "-n", 5, "--runs-root", root)).stdout
    assert clean(weldsim("watch", paths.run_id, "--runs-root", root)).returncode == 0


@REAL
def test_cancel_a_running_job(tracker, tmp_path):
    root = tracker.root()
    paths, _, _ = submit(long_case_toml(tmp_path), root)
    tracker.remember_agent_of(root)
    entry = wait_running(paths, rows=1)
    job = session_processes(entry["pid"])
    assert len(job) >= 3

    out = clean(weldsim("cancel", paths.run_id, "--runs-root", root))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"run {paths.run_id}: cancelled" in out.stdout
    assert wait_gone(job, 3.0) == {}
    watch = clean(weldsim("watch", paths.run_id, "--runs-root", root))
    assert watch.returncode == 5 and f"run {paths.run_id}: cancelled (cancelled on request)" in watch.stderr
    status = clean(weldsim("status", paths.run_id, "--runs-root", root))
    assert "cancelled" in status.stdout
    assert len(read_attempts(paths)) == 1 and paths.progress_h5.is_file() and not paths.metrics_json.exists()
    again = clean(weldsim("cancel", paths.run_id, "--runs-root", root))  # a final run stays as it is
    assert again.returncode == 0 and "cancelled" in again.stdout and len(read_attempts(paths)) == 1


@pytest.mark.timeout(180)
def test_agent_start_status_stop(tracker):
    root = tracker.root()
    none = clean(weldsim("agent", "status", "--runs-root", root))
    assert none.returncode == 1 and f"no agent serves {root}" in none.stdout

    started = clean(weldsim("agent", "start", "--runs-root", root))
    assert started.returncode == 0 and f"serves {root} on 127.0.0.1:" in started.stdout
    pid = tracker.remember_agent_of(root)
    assert f"agent pid {pid} " in started.stdout

    status = clean(weldsim("agent", "status", "--runs-root", root))
    assert status.returncode == 0 and f"agent pid {pid} serves {root}; following 0 run(s)" in status.stdout
    bare = clean(weldsim("agent", WELDSIM_RUNS_ROOT=str(root)))  # `weldsim agent` alone: the status
    assert bare.returncode == 0 and f"agent pid {pid} serves {root}" in bare.stdout
    again = clean(weldsim("agent", "start", "--runs-root", root))
    assert again.returncode == 0 and f"agent pid {pid} " in again.stdout  # one agent per runs root

    began = time.monotonic()
    stopped = clean(weldsim("agent", "stop", "--runs-root", root))
    assert stopped.returncode == 0 and f"agent pid {pid} stopped" in stopped.stdout
    assert time.monotonic() - began < 20
    assert wait_gone({pid: None}, 5) == {}
    assert not (root / ".agent" / "agent.json").exists()
    assert clean(weldsim("agent", "status", "--runs-root", root)).returncode == 1
    nothing = clean(weldsim("agent", "stop", "--runs-root", root))
    assert nothing.returncode == 0 and f"no agent serves {root}" in nothing.stdout


INVALID_ID = "invalid run id '../x'"


@pytest.mark.timeout(300)
def test_bad_input_is_a_clear_error_without_a_traceback(tracker, tmp_path):
    root = tracker.root()
    unknown = "abcdefabcdef"
    never = prepare_run(ci_case(), root, ranks=2)  # prepared, never submitted
    cases = [
        (("submit", THERMAL, "--ntasks", 0), 2, "Invalid value for '--ntasks'"),
        (("submit", THERMAL, "--executor", "pbs"), 2, "Invalid value for '--executor'"),
        (("submit",), 2, "give either CASE or --resume RUN"),
        (("submit", THERMAL, "--resume", unknown), 2, "give either CASE or --resume RUN"),
        (("submit", "--resume", "../x"), 1, INVALID_ID),
        (("submit", "--resume", unknown), 1, f"no run {unknown} under {root}"),
        (("submit", tmp_path / "missing.toml"), 1, "missing.toml"),
        (("status", "../x"), 1, INVALID_ID),
        (("status", unknown), 1, f"no run {unknown} under {root}"),
        (("status", never.run_id), 1, f"run {never.run_id} was never submitted to an executor"),
        (("watch", "../x"), 1, INVALID_ID),
        (("watch", unknown), 1, f"no run {unknown} under {root}"),
        (("logs", "../x"), 1, INVALID_ID),
        (("cancel", "../x"), 1, INVALID_ID),
        (("cancel", unknown), 1, f"no run {unknown} under {root}"),
        (("cancel", never.run_id), 1, f"no agent serves {root}"),
    ]
    for args, code, message in cases:
        out = clean(weldsim(*args, "--runs-root", root))
        assert out.returncode == code, (args, out.stdout + out.stderr)
        assert message in " ".join((out.stdout + out.stderr).split()), (args, out.stdout + out.stderr)
    # nothing was prepared, submitted or started by any of them
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [never.run_id]
    assert not (root / ".agent" / "agent.json").exists()
    assert not (never.root / "executor.json").exists()
