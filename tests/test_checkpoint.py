"""weldsim_hpc.checkpoint + progress_reader: progress.h5 written by one process, tailed by another.

Writers that must live in another process (the live tail, the kill -9) run as
`.venv/bin/python -c SCRIPT` subprocesses. This module never imports mpi4py (h5py here
is the serial build): a pytest process that imported it could no longer launch mpirun.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from weldsim_hpc.checkpoint import (FORMAT_NAME, PROGRESS_FILE, CheckpointMismatchError, ProgressFormatError,
                                    ProgressWriter, archived_attempts, find_resume_checkpoint, fit_bytes,
                                    read_latest_checkpoint, rotate_progress_file, start_attempt)
from weldsim_hpc.errors import WeldSimError
from weldsim_hpc.progress_reader import ProgressReader, is_stale, to_messages
from weldsim_hpc.states import RunState

ROOT = Path(__file__).resolve().parents[1]
CASE, MESH = "c" * 64, "m" * 64


def writer(run_dir, **kw) -> ProgressWriter:
    opts = dict(is_writer=True, run_id="abcdef123456", case_hash=CASE, mesh_hash=MESH, n_values=8,
                field_names=["T"], field_layout="P1 nodal, input node order")
    return start_attempt(run_dir, **{**opts, **kw})


def spawn(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 10.0, what: str = ""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


# ---------------------------------------------------------------------- live tailing

LIVE_WRITER = """
    import sys, time
    from weldsim_hpc.checkpoint import start_attempt
    w = start_attempt(sys.argv[1], is_writer=True, run_id="live00000001", case_hash="c", mesh_hash="m")
    for step in range(15):
        w.progress(step, step * 1e-3, 100 * step / 15, "solve", f"step {step}", residual=10.0 ** -step, force=True)
        time.sleep(0.05)
    w.status("completed", "done")
    time.sleep(0.2)
    w.close()
"""


def test_reader_in_another_process_sees_rows_while_writer_runs(tmp_path):
    proc = spawn(LIVE_WRITER, str(tmp_path))
    path = tmp_path / PROGRESS_FILE
    wait_for(lambda: path.exists() or proc.poll() is not None, what="progress.h5")
    seen, polls_with_rows_while_alive, states = [], 0, []
    with ProgressReader(path) as reader:
        while True:
            alive = proc.poll() is None
            p = reader.poll()
            seen += p.rows
            polls_with_rows_while_alive += bool(alive and p.rows)
            if p.status and (not states or states[-1] != p.status.state):
                states.append(p.status.state)
            if not alive:
                break
            time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert polls_with_rows_while_alive >= 3, f"rows arrived in {polls_with_rows_while_alive} polls while alive"
    assert [r.step for r in seen] == list(range(15))
    assert seen[3].message == "step 3" and seen[3].phase == "solve" and seen[3].residual == 1e-3
    assert states == [RunState.RUNNING, RunState.COMPLETED]


def test_reader_messages_follow_design(tmp_path):
    with writer(tmp_path, min_interval_s=0) as w, ProgressReader(tmp_path / PROGRESS_FILE) as r:
        w.progress(1, 0.5, 50.0, "solve", "KSP it 3", residual=1e-6)
        first = r.messages()
        assert [m["type"] for m in first] == ["progress"]
        m = first[0]
        assert {k: m[k] for k in ("run_id", "percent", "phase", "message", "step", "t", "residual")} == {
            "run_id": "abcdef123456", "percent": 50.0, "phase": "solve", "message": "KSP it 3", "step": 1,
            "t": 0.5, "residual": 1e-6}
        assert 0 <= m["elapsed_s"] < 5
        w.progress(2, 1.0, 100.0, "output", "writing fields")
        w.status(RunState.COMPLETED, "done")
        last = r.messages({"gain": {"value": 3.0, "unit": "1"}})
        assert [m["type"] for m in last] == ["progress", "completed"]
        assert last[1]["status"] == "completed" and last[1]["metrics_summary"]["gain"]["value"] == 3.0
        assert last[1]["compute_time_s"] >= 0
        assert r.messages() == []  # the final message comes once
        json.dumps(first + last, allow_nan=False)


def test_error_message_and_nan_is_json_null():
    from weldsim_hpc.progress_reader import ProgressRow, StatusRow

    rows = [ProgressRow(0, 0.0, 0.0, "assemble", "", math.nan, 10.0)]
    msgs = to_messages("r1", rows, StatusRow(12.0, math.nan, RunState.FAILED, "KSP diverged", 1), started_unix=9.0)
    assert msgs[0]["residual"] is None and msgs[0]["elapsed_s"] == 1.0
    assert msgs[1] == {"type": "error", "run_id": "r1", "status": "failed", "error": "KSP diverged"}
    json.dumps(msgs, allow_nan=False)


# ------------------------------------------------------------------- rate and status


def test_heartbeat_is_rate_limited(tmp_path):
    with writer(tmp_path) as w:  # default 2 s
        start = time.monotonic()
        written = [w.progress(0, 0.0, 1.0, "solve", f"it {i}") for i in range(1000)]
        assert time.monotonic() - start < 2.0, "1000 calls took longer than the interval: test is moot"
        assert sum(written) == 1 and written[0]
        assert w.progress(1, 0.1, 2.0, "solve", "step boundary", force=True)
        assert w.progress(1, 0.1, 2.0, "output", "phase change")  # a new phase forces a row
        assert not w.progress(1, 0.1, 2.0, "output", "again")
    with writer(tmp_path, min_interval_s=0.1) as w:
        assert w.progress(0, 0.0, 0.0, "solve") and not w.progress(0, 0.0, 0.0, "solve")
        time.sleep(0.12)
        assert w.progress(0, 0.0, 0.0, "solve")
    with ProgressReader(tmp_path / "progress.1.h5") as r:
        rows = r.poll().rows
    assert [x.message for x in rows] == ["it 0", "step boundary", "phase change"]


def test_status_rows_exceptions_and_staleness(tmp_path):
    path = tmp_path / PROGRESS_FILE
    with pytest.raises(RuntimeError):
        with writer(tmp_path) as w:
            w.progress(3, 0.3, 30.0, "solve", "x")
            assert not is_stale(path, time.time(), 5.0)
            assert is_stale(path, time.time() + 10.0, 5.0)  # running and silent for 10 s -> lost
            raise RuntimeError("KSP diverged")
    with ProgressReader(path) as r:
        statuses = list(r._status[:])  # every row, to check the log of states
        assert r.poll().status.state is RunState.FAILED
    assert [s["state"] for s in statuses] == [b"running", b"failed"]
    assert statuses[-1]["message"] == b"RuntimeError: KSP diverged" and statuses[-1]["attempt"] == 1
    assert not is_stale(path, time.time() + 1e6, 5.0)  # finished runs are never stale
    with writer(tmp_path) as w:
        w.status(RunState.INTERRUPTED, "SIGTERM: checkpoint written", t=0.4)
        with pytest.raises(ValueError):
            w.status("finished")  # not a RunState
    with ProgressReader(path) as r:
        s = r.poll().status
    assert (s.state, s.t, s.attempt) == (RunState.INTERRUPTED, 0.4, 2)


def test_long_texts_are_cut_on_character_boundaries():
    assert fit_bytes("é" * 150, 200) == ("é" * 100).encode()
    assert fit_bytes("aé", 2) == b"a"


# ---------------------------------------------------------------------- checkpoints


def test_checkpoints_round_trip_bit_exactly(tmp_path):
    rng = np.random.default_rng(7)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, np.finfo(float).max, 1 / 3])
    vectors = [rng.standard_normal(8) * 10.0 ** rng.integers(-300, 300, 8), special]
    with writer(tmp_path) as w:
        for k, v in enumerate(vectors, start=1):
            w.checkpoint(k, k * 1e-3, 1e-3, v)
        with pytest.raises(ValueError, match=r"expected shape \(8,\)"):
            w.checkpoint(3, 3e-3, 1e-3, np.zeros(7))
    ck = read_latest_checkpoint(tmp_path / PROGRESS_FILE, CASE, MESH)
    assert (ck.step, ck.t, ck.dt) == (2, 2e-3, 1e-3)
    assert ck.values.dtype == np.float64 and np.array_equal(ck.values.view(np.uint64), special.view(np.uint64))
    with writer(tmp_path) as w:
        pass
    assert read_latest_checkpoint(tmp_path / PROGRESS_FILE, CASE, MESH) is None  # none in attempt 2


@pytest.mark.parametrize("case, mesh, which", [("x" * 64, MESH, "case"), (CASE, "y" * 64, "mesh")],
                         ids=["case", "mesh"])
def test_hash_mismatch_is_refused(tmp_path, case, mesh, which):
    with writer(tmp_path) as w:
        w.checkpoint(1, 1.0, 1.0, np.ones(8))
    with pytest.raises(CheckpointMismatchError, match=f"{which} hash .* cannot resume") as info:
        read_latest_checkpoint(tmp_path / PROGRESS_FILE, case, mesh)
    assert isinstance(info.value, WeldSimError)


@pytest.mark.parametrize("attrs, expected", [({"format": FORMAT_NAME, "format_version": 99}, "format_version 99"),
                                             ({}, "not a WeldSim progress file")], ids=["v99", "foreign"])
def test_unknown_format_is_refused(tmp_path, attrs, expected):
    path = tmp_path / PROGRESS_FILE
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs.update(attrs)
    with pytest.raises(ProgressFormatError, match=expected):
        ProgressReader(path)
    with pytest.raises(ProgressFormatError, match=expected):
        read_latest_checkpoint(path, CASE, MESH)


# ------------------------------------------------------------------ attempts on disk


def test_rotation_keeps_one_file_per_attempt(tmp_path):
    assert rotate_progress_file(tmp_path) == 0
    with writer(tmp_path) as w:
        w.checkpoint(5, 0.5, 0.1, np.full(8, 5.0))
    with writer(tmp_path):
        pass  # attempt 2 died before its first checkpoint
    with writer(tmp_path) as w:
        assert w.attempt == 3
    assert [n for n, _ in archived_attempts(tmp_path)] == [1, 2]
    assert not os.stat(tmp_path / "progress.1.h5").st_mode & 0o222  # earlier attempts are read-only
    path, ck = find_resume_checkpoint(tmp_path, CASE, MESH)  # newest checkpoint: attempt 1's
    assert path.name == "progress.1.h5" and ck.step == 5 and np.all(ck.values == 5.0)
    with pytest.raises(FileExistsError, match="rotate it first"):
        ProgressWriter(tmp_path / PROGRESS_FILE, is_writer=True, run_id="r", attempt=9, case_hash=CASE,
                       mesh_hash=MESH)
    assert rotate_progress_file(tmp_path) == 3


def test_non_writer_is_a_no_op(tmp_path):
    missing = tmp_path / "not" / "there"
    w = start_attempt(missing, is_writer=False, run_id="r", case_hash=CASE, mesh_hash=MESH, n_values=8)
    with w:
        assert not w.progress(0, 0.0, 0.0, "solve", force=True)
        w.status(RunState.COMPLETED)
        w.checkpoint(1, 0.0, 1.0, None)
    assert not missing.exists() and not tmp_path.joinpath(PROGRESS_FILE).exists()


KILLED_WRITER = """
    import sys, time
    import numpy as np
    from weldsim_hpc.checkpoint import start_attempt
    n = 200_000
    base = np.arange(n, dtype=np.float64) / 7.0
    w = start_attempt(sys.argv[1], is_writer=True, run_id="kill00000001", case_hash="c", mesh_hash="m",
                      n_values=n, field_names=["u_x", "u_y", "u_z"], min_interval_s=0)
    step = 0
    while True:  # until SIGKILL
        step += 1
        w.progress(step, step * 1e-3, 0.0, "solve", f"step {step}")
        w.checkpoint(step, step * 1e-3, 1e-3, base + step)
"""


def test_kill_9_mid_write_then_rotate_and_resume(tmp_path):
    proc = spawn(KILLED_WRITER, str(tmp_path))
    path = tmp_path / PROGRESS_FILE

    def third_checkpoint():
        if proc.poll() is not None:
            pytest.fail(f"writer exited: {proc.communicate()[1]}")
        ck = path.exists() and read_latest_checkpoint(path, "c", "m")
        return ck and ck.step >= 3

    wait_for(third_checkpoint, what="three checkpoints")
    time.sleep(0.013)  # land somewhere inside a write
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    with pytest.raises(OSError):  # the checked behaviour that forces one file per attempt
        h5py.File(path, "r+").close()
    with ProgressReader(path) as r:  # the killed attempt still reads, and looks lost
        assert r.poll().status.state is RunState.RUNNING and r.is_stale(time.time() + 60, 30)

    assert rotate_progress_file(tmp_path) == 1
    with start_attempt(tmp_path, is_writer=True, run_id="kill00000001", case_hash="c", mesh_hash="m",
                       n_values=200_000) as w:
        assert w.attempt == 2
        found = find_resume_checkpoint(tmp_path, "c", "m")
        assert found is not None and found[0].name == "progress.1.h5"
        ck = found[1]
        assert ck.step >= 3 and ck.t == ck.step * 1e-3
        expected = np.arange(200_000, dtype=np.float64) / 7.0 + ck.step
        assert np.array_equal(ck.values, expected)  # the field row matches its index row exactly
        w.checkpoint(ck.step + 1, ck.t + ck.dt, ck.dt, ck.values)
        w.status(RunState.COMPLETED)
    assert read_latest_checkpoint(path, "c", "m").step == ck.step + 1
