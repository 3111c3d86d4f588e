"""What the agent knows about a run, kept in the run directory (`<run>/executor.json`).

Why in the run directory and not in the agent's memory: the agent may be SIGKILLed at
any moment. A new agent must be able to tell, from the directory alone (plus the
scheduler), which executor owns the run, what was asked of it, whether a cancel was
requested, how often it was resubmitted and whether its state is final. attempts.json
(written by the launcher) says which processes or jobs ran; this file says what the
agent decided. Written atomically by the agent only.

    {"run_id", "executor": "local"|"slurm", "resources": {...}, "state": RunState,
     "reason": str|null, "resubmissions": int, "cancel_requested": bool,
     "submitted_at", "updated_at", "finished_at": UNIX s|null, "resume": bool,
     "history": [[UNIX s, state, reason], ...]}
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import WeldSimError
from ..run_paths import RunPaths, iter_runs, write_json_atomic
from ..states import RunState

RECORD_FILE = "executor.json"
RUN_LOCK_FILE = "run.lock"


class RecordError(WeldSimError):
    """executor.json is missing or unreadable."""


class Resources(BaseModel):
    """What a run asks of its executor (validated again by the Slurm renderer)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ntasks: int = Field(1, ge=1)
    nodes: int | None = Field(None, ge=1)
    partition: str | None = None
    account: str | None = None
    walltime: str | None = None  # Slurm forms: MM, HH:MM:SS, D-HH:MM:SS …
    mem: str | None = None
    image: str | None = None


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    executor: Literal["local", "slurm"]
    resources: Resources = Resources()
    state: RunState = RunState.QUEUED
    reason: str | None = None
    resubmissions: int = 0
    cancel_requested: bool = False
    resume: bool = False
    submitted_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    history: list[tuple[float, RunState, str | None]] = Field(default_factory=list)  # every state change


def record_path(paths: RunPaths) -> Path:
    return paths.root / RECORD_FILE


def read_record(paths: RunPaths) -> RunRecord:
    path = record_path(paths)
    try:
        return RunRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise RecordError(f"run {paths.run_id} was never submitted to an executor (no {path})") from None
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: unreadable executor record ({exc})") from None


def write_record(paths: RunPaths, record: RunRecord) -> RunRecord:
    """Write the record atomically; a changed state is appended to its history.

    finished_at is set when the state becomes final and cleared when it is not (a re-queued run).
    """
    now = time.time()
    history = list(record.history)
    if not history or history[-1][1] != record.state or history[-1][2] != record.reason:
        history.append((now, record.state, record.reason))
    record = record.model_copy(update={"updated_at": now, "history": history})
    if record.state.is_terminal and record.finished_at is None:
        record = record.model_copy(update={"finished_at": record.updated_at})
    elif not record.state.is_terminal and record.finished_at is not None:
        record = record.model_copy(update={"finished_at": None})
    write_json_atomic(record_path(paths), json.loads(record.model_dump_json()))
    return record


def update_record(paths: RunPaths, **changes: Any) -> RunRecord:
    return write_record(paths, read_record(paths).model_copy(update=changes))


def submitted_runs(runs_root: str | os.PathLike) -> Iterator[tuple[RunPaths, RunRecord]]:
    """Every run under runs_root that has an executor record (unreadable ones skipped)."""
    for paths in iter_runs(runs_root):
        if record_path(paths).is_file():
            try:
                yield paths, read_record(paths)
            except RecordError:
                continue


# --- the single-writer lock ----------------------------------------------------------
# The launcher takes an exclusive flock on <run>/run.lock and hands the locked file to the
# job (pass_fds): the lock lives exactly as long as the job's launcher process (mpirun or
# python), whoever started it. So a restarted agent can tell a live orphan (lock held)
# from a dead attempt (lock free) without trusting pids, and no second writer can start.


class RunLocked(WeldSimError):
    """Another process holds the run's lock: an attempt of this run is alive."""


def try_lock(paths: RunPaths) -> int:
    """Open and lock <run>/run.lock without waiting; return the fd. RunLocked if held."""
    fd = os.open(paths.root / RUN_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLocked(f"run {paths.run_id} is being run by another process (its run.lock is held)") from None
    return fd


def is_locked(paths: RunPaths) -> bool:
    """True while some process (a live attempt) holds the run's lock."""
    if not (paths.root / RUN_LOCK_FILE).exists():
        return False
    try:
        fd = try_lock(paths)
    except RunLocked:
        return True
    os.close(fd)
    return False


@contextmanager
def locked(paths: RunPaths) -> Iterator[int]:
    fd = try_lock(paths)
    try:
        yield fd
    finally:
        os.close(fd)
