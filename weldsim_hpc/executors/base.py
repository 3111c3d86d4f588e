"""The small executor base: what every scheduler must do, and how an attempt's end reads.

An executor starts one attempt of a run as one dask task (key ``run-<id>-a<n>``, not
pure, ``allowed-failures: 0``: dask never re-runs it behind our back), cancels it, shows
its logs, and adopts an attempt that a previous agent started. The agent (agent.py) does
the bookkeeping in executor.json; executors only talk to their scheduler.
"""

from __future__ import annotations

import abc
import signal
from dataclasses import dataclass, field
from typing import Any

from ..launch import EXIT_COMPLETED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, LAUNCHER_LOG
from ..run_paths import RunPaths
from ..states import RunState
from .config import ExecutorConfig
from .record import RunRecord


def task_key(run_id: str, attempt: int) -> str:
    """The dask key of one attempt: unique per attempt, so a re-submission is a new task."""
    return f"run-{run_id}-a{attempt}"


@dataclass
class Outcome:
    """How an attempt ended, as the agent records it."""

    state: RunState
    reason: str | None = None
    resubmit: bool = False  # lost to a node or agent failure: resume once from the checkpoint


def outcome_of_exit(code: int, *, cancel_requested: bool = False) -> Outcome:
    """The state an entry-point exit code means (DESIGN.md: 0, 2, 3, 4; 128+N killed by N)."""
    if cancel_requested:
        return Outcome(RunState.CANCELLED, "cancelled on request")
    if code == EXIT_COMPLETED:
        return Outcome(RunState.COMPLETED)
    if code == EXIT_INTERRUPTED:
        return Outcome(RunState.INTERRUPTED, "interrupted after a checkpoint; resume with `weldsim submit --resume`")
    if code == EXIT_INVALID:
        return Outcome(RunState.FAILED, "invalid case (exit code 2); see solver.log")
    if code == EXIT_FAILED:
        return Outcome(RunState.FAILED, "solver failed (exit code 3); see solver.log")
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return Outcome(RunState.FAILED, f"killed by {name} (exit code {code})")
    return Outcome(RunState.FAILED, f"exit code {code}; see solver.log and {LAUNCHER_LOG}")


#: exit code recorded for an attempt that ended unseen, without a final status
EXIT_LOST = -1


def outcome_of_recorded_end(last: dict, record: RunRecord) -> Outcome:
    """How the last attempt ended by attempts.json (its exit code is recorded)."""
    if last["exit_code"] == EXIT_LOST:
        return Outcome(RunState.LOST, f"attempt {last['attempt']} was lost", resubmit=True)
    return outcome_of_exit(last["exit_code"], cancel_requested=record.cancel_requested)


#: the exit code an attempt's last progress status stands for, when nobody saw it exit
EXIT_OF_STATUS = {RunState.COMPLETED: EXIT_COMPLETED, RunState.INTERRUPTED: EXIT_INTERRUPTED,
                  RunState.FAILED: EXIT_FAILED, RunState.CANCELLED: EXIT_INTERRUPTED}


@dataclass
class Attempt:
    """One attempt the agent follows: its dask future (None when adopted) and executor data."""

    run_id: str
    number: int
    future: Any = None
    adopted: bool = False
    data: dict[str, Any] = field(default_factory=dict)


class Executor(abc.ABC):
    """Submit, status, cancel, logs, adopt — for one kind of scheduler."""

    name: str

    def __init__(self, config: ExecutorConfig):
        self.config = config

    @abc.abstractmethod
    def start(self, paths: RunPaths, record: RunRecord, attempt: int, *, resume: bool) -> Attempt:
        """Hand attempt `attempt` of the run to the scheduler; return at once."""

    @abc.abstractmethod
    def poll(self, paths: RunPaths, record: RunRecord, attempt: Attempt) -> Outcome | None:
        """None while the attempt runs or waits; its Outcome once it has ended."""

    @abc.abstractmethod
    def cancel(self, paths: RunPaths, attempt: Attempt) -> None:
        """Stop the attempt: release the future, signal it, kill it after the grace period."""

    @abc.abstractmethod
    def adopt(self, paths: RunPaths, record: RunRecord) -> Attempt | Outcome | None:
        """After an agent restart: the live attempt to follow, or how the last one ended,
        or None when no attempt was ever started (the run is still to be started)."""

    def is_running(self, paths: RunPaths, attempt: Attempt) -> bool:
        """True once the attempt's job has started (queued before)."""
        return False

    def logs(self, paths: RunPaths, lines: int = 200) -> str:
        """The tail of the run's solver log and launcher log."""
        return tail_logs(paths, lines)

    def close(self) -> None:
        """Release the scheduler (clusters, clients)."""


def tail(path, lines: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 256 * lines))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def tail_logs(paths: RunPaths, lines: int = 200, extra: tuple = ()) -> str:
    parts = []
    for path in (paths.solver_log, paths.root / LAUNCHER_LOG, *extra):
        text = tail(path, lines)
        if text:
            parts.append(f"== {path.name} ==\n{text}")
    return "\n".join(parts) or f"run {paths.run_id}: no logs yet"
