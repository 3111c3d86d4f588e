"""The agent: the one long-lived owner of a runs root's executors and their runs.

Why one owner: dask clusters, the futures of running attempts, and the decisions "this
run is lost, resubmit it once" must live in exactly one process, or two processes start
two attempts of one run. The agent holds an exclusive lock on <runs_root>/.agent/agent.lock
for its whole life. `weldsim agent` runs it as a daemon (rpc.py serves it on 127.0.0.1);
the portal hosts the same class in its single process and calls it directly.

Everything the agent decides is written to the run directory (executor.json, see
record.py) before it acts, so a new agent can `reconcile` after a crash: live attempts
are adopted, dead ones resumed once, queued ones started. Reconciliation is idempotent.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from typing import Any

from ..errors import WeldSimError
from ..run_paths import RunPaths, read_attempts
from ..states import RunState
from .base import Attempt, Executor, Outcome
from .config import ExecutorConfig
from .record import RecordError, Resources, RunRecord, read_record, submitted_runs, write_record

log = logging.getLogger("weldsim.agent")

AGENT_LOCK = "agent.lock"


class AgentError(WeldSimError):
    """A request the agent refuses (unknown run, final run, another agent owns the root)."""


class AgentRunning(AgentError):
    """Another agent already owns this runs root."""


def _make_executor(name: str, config: ExecutorConfig) -> Executor:
    if name == "local":
        from .local import LocalExecutor

        return LocalExecutor(config)
    if name == "slurm":
        from .slurm import SlurmExecutor

        return SlurmExecutor(config)
    raise AgentError(f"unknown executor {name!r} (valid: local, slurm)")


class Agent:
    """Submit, cancel and follow runs under one runs root; see the module docstring."""

    def __init__(self, config: ExecutorConfig):
        self.config = config
        self._executors: dict[str, Executor] = {}
        self._attempts: dict[str, Attempt] = {}
        self._mutex = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None

    # --- life cycle ----------------------------------------------------------------------
    def start(self, *, monitor: bool = True) -> "Agent":
        """Take the runs root's agent lock, reconcile every unfinished run, start following."""
        self.config.agent_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config.agent_dir / AGENT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AgentRunning(f"another agent already owns {self.config.runs_root} "
                               f"(see {self.config.agent_dir})") from None
        self._lock_fd = fd
        self.reconcile()
        if monitor:
            self._thread = threading.Thread(target=self._monitor, name="weldsim-agent-monitor", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop following (runs keep running; a later agent adopts them)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._mutex:
            for ex in self._executors.values():
                ex.close()
            self._executors.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def executor(self, name: str) -> Executor:
        with self._mutex:
            if name not in self._executors:
                self._executors[name] = _make_executor(name, self.config)
            return self._executors[name]

    def _paths(self, run_id: str) -> RunPaths:
        paths = RunPaths.for_id(self.config.runs_root, run_id)
        if not paths.case_json.is_file():
            raise AgentError(f"no prepared run {run_id} under {self.config.runs_root}")
        return paths

    # --- requests ------------------------------------------------------------------------
    def submit(self, run_id: str, executor: str | None = None, resources: Resources | dict | None = None, *,
               resume: bool = False) -> RunRecord:
        """Start a prepared run (or, with resume, a new attempt of an ended, resumable one)."""
        paths = self._paths(run_id)
        with self._mutex:
            if run_id in self._attempts:
                raise AgentError(f"run {run_id} is already queued or running")
            try:
                record = read_record(paths)
            except RecordError:
                record = None
            if record is not None and not resume:
                raise AgentError(f"run {run_id} was already submitted (state {record.state}); "
                                 "use --resume to continue it")
            if record is not None and record.state in (RunState.COMPLETED,):
                raise AgentError(f"run {run_id} has already completed")
            if record is not None and not record.state.is_terminal:
                raise AgentError(f"run {run_id} is {record.state}; it has not ended")
            res = Resources.model_validate(resources or {}) if not isinstance(resources, Resources) else resources
            if record is None:
                record = RunRecord(run_id=run_id, executor=executor or self.config.executor, resources=res)
            else:
                update: dict[str, Any] = {"state": RunState.QUEUED, "reason": None, "finished_at": None,
                                          "cancel_requested": False, "resume": True}
                if executor:
                    update["executor"] = executor
                if resources:
                    update["resources"] = res
                record = record.model_copy(update=update)
            record = write_record(paths, record.model_copy(update={"resume": resume}))
            self._start_attempt(paths, record, resume=resume)
            return record

    def cancel(self, run_id: str) -> RunRecord:
        """Cancel a queued or running run: release its task, stop its processes or job."""
        paths = self._paths(run_id)
        with self._mutex:
            record = read_record(paths)
            if record.state.is_terminal:
                return record
            record = write_record(paths, record.model_copy(update={"cancel_requested": True}))
            attempt = self._attempts.get(run_id)
        if attempt is not None:
            self.executor(record.executor).cancel(paths, attempt)
        with self._mutex:
            if attempt is None or run_id in self._attempts:
                self._settle(paths, read_record(paths), attempt, wait_cancel=True)
            return read_record(paths)

    def status(self, run_id: str) -> RunRecord:
        return read_record(self._paths(run_id))

    def active(self) -> list[str]:
        with self._mutex:
            return sorted(self._attempts)

    def logs(self, run_id: str, lines: int = 200) -> str:
        paths = self._paths(run_id)
        try:
            name = read_record(paths).executor
        except RecordError:
            name = "local"
        return self.executor(name).logs(paths, lines)

    # --- following ------------------------------------------------------------------------
    def _next_attempt(self, paths: RunPaths) -> int:
        return max((a["attempt"] for a in read_attempts(paths)), default=0) + 1

    def _start_attempt(self, paths: RunPaths, record: RunRecord, *, resume: bool) -> None:
        number = self._next_attempt(paths)
        ex = self.executor(record.executor)
        self._attempts[record.run_id] = ex.start(paths, record, number, resume=resume)
        log.info("run %s: attempt %d handed to the %s executor", record.run_id, number, record.executor)

    def _apply(self, paths: RunPaths, record: RunRecord, outcome: Outcome) -> None:
        """Record how an attempt ended; resubmit a lost run once (resuming its checkpoint)."""
        self._attempts.pop(record.run_id, None)
        if outcome.resubmit and record.resubmissions < self.config.max_resubmissions and not record.cancel_requested:
            record = write_record(paths, record.model_copy(update={"state": RunState.LOST, "reason": outcome.reason}))
            record = write_record(paths, record.model_copy(update={
                "state": RunState.QUEUED, "finished_at": None, "reason": f"resubmitted after: {outcome.reason}",
                "resubmissions": record.resubmissions + 1, "resume": True}))
            log.warning("run %s: %s — resubmitting once, resuming from its checkpoint", record.run_id, outcome.reason)
            self._start_attempt(paths, record, resume=True)
            return
        state = outcome.state
        if outcome.resubmit and state is not RunState.CANCELLED:
            state = RunState.LOST
        write_record(paths, record.model_copy(update={"state": state, "reason": outcome.reason}))
        log.info("run %s: %s%s", record.run_id, state, f" ({outcome.reason})" if outcome.reason else "")

    def _settle(self, paths: RunPaths, record: RunRecord, attempt: Attempt | None, *, wait_cancel: bool = False) -> None:
        if attempt is None:  # never started (queued in a dead agent) and now cancelled
            if record.cancel_requested:
                self._apply(paths, record, Outcome(RunState.CANCELLED, "cancelled on request"))
            return
        ex = self.executor(record.executor)
        deadline = time.monotonic() + (self.config.cancel_grace_s + 20 if wait_cancel else 0)
        while True:
            outcome = ex.poll(paths, record, attempt)
            if outcome is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if outcome is not None:
            self._apply(paths, record, outcome)
        elif record.state is RunState.QUEUED and ex.is_running(paths, attempt):
            write_record(paths, record.model_copy(update={"state": RunState.RUNNING}))

    def tick(self) -> None:
        """One pass over the followed attempts (the monitor thread calls this)."""
        with self._mutex:
            for run_id, attempt in list(self._attempts.items()):
                paths = RunPaths.for_id(self.config.runs_root, run_id)
                try:
                    self._settle(paths, read_record(paths), attempt)
                except Exception:  # one broken run must not stop the agent following the others
                    log.exception("run %s: following it failed", run_id)

    def _monitor(self) -> None:
        while not self._stop.wait(self.config.poll_s):
            self.tick()

    def reconcile(self) -> list[str]:
        """Bring every unfinished run up to date; idempotent. Returns the run ids it touched."""
        touched = []
        with self._mutex:
            for paths, record in submitted_runs(self.config.runs_root):
                if record.state.is_terminal or record.run_id in self._attempts:
                    continue
                touched.append(record.run_id)
                found = self.executor(record.executor).adopt(paths, record)
                if isinstance(found, Attempt):
                    log.info("run %s: adopted attempt %d", record.run_id, found.number)
                    self._attempts[record.run_id] = found
                elif isinstance(found, Outcome):
                    self._apply(paths, record, found)
                elif record.cancel_requested:
                    self._apply(paths, record, Outcome(RunState.CANCELLED, "cancelled on request"))
                else:
                    self._start_attempt(paths, record, resume=record.resume)
        return touched

    def wait(self, run_id: str, timeout: float) -> RunRecord:
        """Block until the run's state is final (tests and the portal's shutdown)."""
        deadline = time.monotonic() + timeout
        paths = self._paths(run_id)
        while True:
            record = read_record(paths)
            if record.state.is_terminal:
                return record
            if time.monotonic() > deadline:
                raise AgentError(f"run {run_id} still {record.state} after {timeout:.0f} s")
            time.sleep(0.2)
