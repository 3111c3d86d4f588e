"""LocalExecutor — the embedded default: runs on this machine through a dask LocalCluster.

Each attempt is one dask task (`run_attempt`) that takes the run's lock, starts the entry
point as its own process group (mpirun for N > 1 ranks) with the locked run.lock passed
down, and waits for it. The scheduler is in-process (threads, not worker processes): the
task only waits on a child, and a worker process of its own would be one more thing to
die. If the agent is SIGKILLed, the job lives on holding run.lock; a new agent sees the
held lock, adopts the orphan and follows it until the lock is free. A dead attempt
(lock free, no exit recorded, no final status) is `lost` and resumed once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from ..launch import EXIT_INTERRUPTED, exit_code, launch
from ..run_paths import RunPaths, read_attempts, record_attempt_end
from ..states import RunState
from .base import (EXIT_LOST, EXIT_OF_STATUS, Attempt, Executor, Outcome, outcome_of_exit,
                   outcome_of_recorded_end, task_key)
from .config import ExecutorConfig
from .record import RecordError, RunRecord, is_locked, read_record, try_lock



def _cancel_requested(paths: RunPaths) -> bool:
    try:
        return read_record(paths).cancel_requested
    except RecordError:
        return False


def run_attempt(run_dir: str, ranks: int, resume: bool, python: str, cancel_grace_s: float = 10.0) -> int:
    """The dask task of one attempt: lock, launch, wait, record the exit; the exit code.

    A cancel that arrives while the task is starting may find no job to signal yet (its
    pid is not in attempts.json): so the task looks at the record's cancel_requested
    (written before the agent signals anything) before launching, and once more after the
    attempt is recorded, and then stops the job itself.
    """
    paths = RunPaths.from_dir(run_dir)
    fd = try_lock(paths)  # RunLocked if another attempt is alive: never two writers
    try:
        if _cancel_requested(paths):
            return 128 + signal.SIGTERM  # cancelled before it started: nothing launched
        proc = launch(paths.root, ranks, resume=resume, python=python, pass_fds=(fd,))
    finally:
        os.close(fd)  # the job holds the lock from here on
    if _cancel_requested(paths):
        stop_job(proc.pid, lambda: proc.poll() is None, cancel_grace_s)
    code = exit_code(proc.wait())
    attempt = next(a for a in reversed(read_attempts(paths)) if a.get("pid") == proc.pid)
    record_attempt_end(paths, attempt["attempt"], code)
    return code


def process_start_time(pid: int) -> float | None:
    """UNIX start time of process `pid` from /proc (None if it does not exist or has exited).

    A zombie (exited, not yet reaped) counts as gone: an orphaned job's launcher is
    re-parented to pid 1, which in a container may never reap it.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def is_same_process(pid: int, start_time: float, slack_s: float = 5.0) -> bool:
    """True if `pid` is alive and started when attempts.json says (not a reused pid)."""
    started = process_start_time(pid)
    return started is not None and abs(started - start_time) <= slack_s


def session_members(sid: int) -> list[int]:
    """Pids of the processes in session `sid` (from /proc; zombies included, harmless)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid:
                members.append(int(entry.name))
    return members


def signal_group(pid: int, sig: int) -> bool:
    """Signal the job led by `pid`: its process group and every process of its session.

    The launcher starts the job in a session of its own; OpenMPI then gives each rank a
    process group of its own inside that session, so killpg alone reaches mpirun only.
    False if nothing was left to signal.
    """
    reached = False
    try:
        os.killpg(pid, sig)
        reached = True
    except (ProcessLookupError, PermissionError):
        pass
    for member in session_members(pid):
        try:
            os.kill(member, sig)
            reached = True
        except (ProcessLookupError, PermissionError):
            pass
    return reached


def stop_job(pid: int, is_alive, grace_s: float) -> None:
    """SIGTERM the job's process group; SIGKILL it if `is_alive()` after grace_s seconds."""
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and is_alive():
        time.sleep(0.2)
    if is_alive():
        signal_group(pid, signal.SIGKILL)


def last_status(paths: RunPaths, attempt: int) -> RunState | None:
    """The final state the attempt itself wrote into progress.h5 (None if none)."""
    from ..progress_reader import ProgressReader

    if not paths.progress_h5.exists():
        return None
    try:
        with ProgressReader(paths.progress_h5) as reader:
            _, status = reader.latest()
    except (OSError, KeyError, ValueError):
        return None
    if status is None or status.attempt != attempt or not status.state.is_terminal:
        return None
    return status.state


def ended_unseen(paths: RunPaths, number: int, cancel_requested: bool) -> Outcome:
    """An attempt that ended while nobody waited for it: judged from its progress file."""
    state = last_status(paths, number)
    code = EXIT_OF_STATUS.get(state, EXIT_LOST)
    if not any(a["attempt"] == number and a.get("exit_code") is not None for a in read_attempts(paths)):
        record_attempt_end(paths, number, code)
    if code == EXIT_LOST:
        if cancel_requested:
            return Outcome(RunState.CANCELLED, "cancelled on request")
        return Outcome(RunState.LOST, f"attempt {number} ended while no agent watched it, without a final "
                                      "status", resubmit=True)
    return outcome_of_exit(code, cancel_requested=cancel_requested)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, config: ExecutorConfig):
        super().__init__(config)
        self._client = None
        self._cluster = None
        self._guard = threading.Lock()

    def _dask(self):
        with self._guard:
            if self._client is None:
                import dask
                from distributed import Client, LocalCluster

                dask.config.set({"distributed.scheduler.allowed-failures": 0})
                # The scheduler and the worker start an HTTP server (health and info pages) even
                # without a dashboard, on 0.0.0.0 unless told an address: loopback only here.
                self._cluster = LocalCluster(processes=False, n_workers=1,
                                             threads_per_worker=self.config.local_max_runs,
                                             dashboard_address=None, scheduler_port=0,
                                             scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                             worker_dashboard_address="127.0.0.1:0")
                self._client = Client(self._cluster)
            return self._client

    def start(self, paths: RunPaths, record: RunRecord, attempt: int, *, resume: bool) -> Attempt:
        python = self.config.python or os.fspath(Path(os.sys.executable))
        future = self._dask().submit(run_attempt, os.fspath(paths.root), record.resources.ntasks, resume, python,
                                     self.config.cancel_grace_s, key=task_key(record.run_id, attempt), pure=False)
        return Attempt(record.run_id, attempt, future)

    def _entry(self, paths: RunPaths, number: int) -> dict | None:
        return next((a for a in read_attempts(paths) if a["attempt"] == number), None)

    def is_running(self, paths: RunPaths, attempt: Attempt) -> bool:
        return self._entry(paths, attempt.number) is not None

    def poll(self, paths: RunPaths, record: RunRecord, attempt: Attempt) -> Outcome | None:
        if attempt.adopted:
            if is_locked(paths):
                return None
            return ended_unseen(paths, attempt.number, record.cancel_requested)
        future = attempt.future
        if not future.done():
            return None
        if record.cancel_requested or future.status == "cancelled":
            if future.status != "cancelled" or not is_locked(paths):
                return Outcome(RunState.CANCELLED, "cancelled on request")
            return None  # released, but the process is still being stopped
        if future.status == "error":
            return Outcome(RunState.FAILED, f"the attempt could not run: {future.exception()}")
        return outcome_of_exit(future.result(), cancel_requested=record.cancel_requested)

    def cancel(self, paths: RunPaths, attempt: Attempt) -> None:
        if attempt.future is not None:
            attempt.future.cancel()  # first: a released task is never started (again)
        entry = self._entry(paths, attempt.number)
        if entry is None or entry.get("exit_code") is not None:
            return
        pid, started = entry["pid"], entry["start_time"]
        if not is_same_process(pid, started):
            return
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.cancel_grace_s
        while time.monotonic() < deadline and is_same_process(pid, started):
            time.sleep(0.2)
        if is_same_process(pid, started) or is_locked(paths):
            signal_group(pid, signal.SIGKILL)

    def adopt(self, paths: RunPaths, record: RunRecord) -> Attempt | Outcome | None:
        attempts = read_attempts(paths)
        if not attempts:
            return None
        last = attempts[-1]
        if last.get("exit_code") is not None:
            return outcome_of_recorded_end(last, record)
        if is_locked(paths):
            return Attempt(record.run_id, last["attempt"], adopted=True)
        return ended_unseen(paths, last["attempt"], record.cancel_requested)

    def close(self) -> None:
        with self._guard:
            if self._client is not None:
                self._client.close()
                self._cluster.close()
                self._client = self._cluster = None


__all__ = ["LocalExecutor", "run_attempt", "EXIT_INTERRUPTED"]
