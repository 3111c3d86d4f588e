"""executor.json (RunRecord): atomic writes, the state history, reading errors; and the
run.lock single-writer lock, also when a child process holds it through pass_fds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from pydantic import ValidationError

from weldsim_hpc.executors.record import (
    RUN_LOCK_FILE,
    RecordError,
    Resources,
    RunLocked,
    RunRecord,
    is_locked,
    locked,
    read_record,
    record_path,
    submitted_runs,
    try_lock,
    update_record,
    write_record,
)
from weldsim_hpc.run_paths import RunPaths
from weldsim_hpc.states import RunState

RUN_ID = "abc123def456"


@pytest.fixture()
def paths(tmp_path):
    p = RunPaths.for_id(tmp_path, RUN_ID)
    p.root.mkdir()
    return p


def test_write_then_read_round_trips_and_starts_the_history(paths):
    record = write_record(paths, RunRecord(run_id=RUN_ID, executor="local", resources=Resources(ntasks=4)))
    again = read_record(paths)
    assert again == record
    assert again.state is RunState.QUEUED and again.resources.ntasks == 4
    assert [(s, r) for _, s, r in again.history] == [(RunState.QUEUED, None)]
    assert again.finished_at is None
    data = json.loads(record_path(paths).read_text())
    assert data["state"] == "queued" and data["history"][0][1] == "queued"
    assert oct(record_path(paths).stat().st_mode & 0o777) == "0o644"


def test_history_grows_on_state_or_reason_changes_only(paths):
    write_record(paths, RunRecord(run_id=RUN_ID, executor="local"))
    update_record(paths, state=RunState.RUNNING)
    update_record(paths, resubmissions=0)  # no state change: no history row
    assert update_record(paths, state=RunState.LOST, reason="gone").finished_at is not None
    requeued = update_record(paths, state=RunState.QUEUED, reason="resubmitted after: gone", resubmissions=1)
    assert requeued.finished_at is None  # not final any more
    update_record(paths, state=RunState.RUNNING, reason=None)
    record = update_record(paths, state=RunState.COMPLETED)
    assert [(s.value, r) for _, s, r in record.history] == [
        ("queued", None), ("running", None), ("lost", "gone"), ("queued", "resubmitted after: gone"),
        ("running", None), ("completed", None)]
    times = [t for t, _, _ in record.history]
    assert times == sorted(times)
    assert record.finished_at == record.updated_at and record.resubmissions == 1
    assert read_record(paths) == record


def test_a_final_state_sets_finished_at_once(paths):
    write_record(paths, RunRecord(run_id=RUN_ID, executor="local"))
    first = update_record(paths, state=RunState.CANCELLED, reason="cancelled on request")
    time.sleep(0.01)
    later = update_record(paths, cancel_requested=True)
    assert first.finished_at is not None and later.finished_at == first.finished_at


def test_writes_are_atomic_for_a_concurrent_reader(paths):
    """A reader polling while the agent rewrites the record always sees a whole record."""
    write_record(paths, RunRecord(run_id=RUN_ID, executor="local"))
    stop = threading.Event()
    seen, errors = [], []

    def reader():
        while not stop.is_set():
            try:
                seen.append(read_record(paths).resubmissions)
            except RecordError as exc:
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(100):
            update_record(paths, resubmissions=i, reason="x" * (i % 50) * 100)
    finally:
        stop.set()
        thread.join()
    assert not errors and len(seen) > 10
    assert [p.name for p in paths.root.iterdir()] == ["executor.json"]  # no temporary file left


def test_a_failed_write_keeps_the_previous_record(paths, monkeypatch):
    before = write_record(paths, RunRecord(run_id=RUN_ID, executor="local"))

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        update_record(paths, state=RunState.RUNNING)
    monkeypatch.undo()
    assert read_record(paths) == before
    assert [p.name for p in paths.root.iterdir()] == ["executor.json"]


def test_missing_or_unreadable_record_is_a_clear_error(paths):
    with pytest.raises(RecordError, match=f"run {RUN_ID} was never submitted to an executor"):
        read_record(paths)
    record_path(paths).write_text("{not json")
    with pytest.raises(RecordError, match="unreadable executor record"):
        read_record(paths)
    record_path(paths).write_text(json.dumps({"run_id": RUN_ID, "executor": "pbs"}))
    with pytest.raises(RecordError, match="unreadable executor record"):
        read_record(paths)


def test_submitted_runs_lists_runs_with_a_readable_record(tmp_path):
    made = {}
    for run_id, content in (("aaaaaaaaaaa1", "ok"), ("aaaaaaaaaaa2", None), ("aaaaaaaaaaa3", "broken")):
        p = RunPaths.for_id(tmp_path, run_id)
        p.root.mkdir()
        if content == "ok":
            made[run_id] = write_record(p, RunRecord(run_id=run_id, executor="slurm"))
        elif content == "broken":
            record_path(p).write_text("[]")
    (tmp_path / ".agent").mkdir()
    (tmp_path / "not-a-run").mkdir()
    assert [(p.run_id, r) for p, r in submitted_runs(tmp_path)] == [("aaaaaaaaaaa1", made["aaaaaaaaaaa1"])]
    assert list(submitted_runs(tmp_path / "nowhere")) == []


def test_resources_are_validated():
    assert Resources().ntasks == 1
    with pytest.raises(ValidationError, match="ntasks"):
        Resources(ntasks=0)
    with pytest.raises(ValidationError, match="nodes"):
        Resources(nodes=0)
    with pytest.raises(ValidationError, match="gpus"):
        Resources.model_validate({"gpus": 1})


# --- run.lock --------------------------------------------------------------------------------
def test_lock_is_exclusive_and_freed_when_closed(paths):
    assert not is_locked(paths)
    assert not (paths.root / RUN_LOCK_FILE).exists()  # asking does not create the file
    fd = try_lock(paths)
    try:
        assert is_locked(paths)
        with pytest.raises(RunLocked, match=f"run {RUN_ID} is being run by another process"):
            try_lock(paths)  # a second open file, even in this process, is refused
        assert is_locked(paths)  # asking does not steal or drop it
    finally:
        os.close(fd)
    assert not is_locked(paths)
    with locked(paths) as fd2:
        assert isinstance(fd2, int) and is_locked(paths)
    assert not is_locked(paths)


def test_lock_is_freed_when_the_holder_dies(paths):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from weldsim_hpc.run_paths import RunPaths; from weldsim_hpc.executors.record import try_lock;"
        f"fd = try_lock(RunPaths.from_dir({str(paths.root)!r})); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert is_locked(paths)
        with pytest.raises(RunLocked):
            try_lock(paths)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert not is_locked(paths)


def test_lock_passed_to_a_child_lives_exactly_as_long_as_the_child(paths):
    """The launcher's pattern: lock, start the job with pass_fds, close its own fd at once."""
    fd = try_lock(paths)
    try:
        child = subprocess.Popen(["sleep", "60"], pass_fds=(fd,), start_new_session=True)
    finally:
        os.close(fd)
    try:
        assert is_locked(paths)  # the child holds the same open file: still locked
        with pytest.raises(RunLocked):
            try_lock(paths)
        grandchild = subprocess.Popen(["sleep", "60"])  # started without the fd: holds nothing
        try:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            assert not is_locked(paths)
        finally:
            grandchild.kill()
            grandchild.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    fd = try_lock(paths)  # the next attempt can take it
    os.close(fd)


def test_a_child_started_without_the_fd_does_not_keep_the_lock(paths):
    fd = try_lock(paths)
    child = subprocess.Popen(["sleep", "60"])  # close_fds=True by default
    try:
        os.close(fd)
        assert not is_locked(paths)
    finally:
        child.kill()
        child.wait(timeout=10)
