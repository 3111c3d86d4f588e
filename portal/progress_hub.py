"""ProgressHub: one progress.h5 reader per run in this process, fanned out to its watchers.

Why one hub: every WebSocket client of a run wants the same messages, and every open
SWMR reader of a progress file is a liability — it makes a writer's reopen fail (errno 11,
DESIGN.md "Progress files"). So the hub keeps at most ONE `ProgressReader` per run,
opened when the first client subscribes and closed within one poll (`poll_s`, default
0.2 s: measured p95 row → client 0.34 s, benchmarks/portal_api.py) of the run ending or of its last client leaving. Messages come from the file
(`weldsim_hpc.progress_reader.to_messages`), never from a broker.

What a subscriber receives, in order: the history (every message of the current attempt
so far, so a client joining late sees the whole curve), then each new message, then one
terminal message, after which the subscription ends:

* the last /status row decides the terminal message: ``completed`` → {"type":
  "completed", "status": "completed", "compute_time_s", "metrics_summary"}; a cancel
  (the job writes ``interrupted`` when the agent's cancel signal reaches it; executor.json
  says ``cancel_requested``) or a ``cancelled`` row → {"type": "completed", "status":
  "cancelled"}; ``failed`` and the rest → {"type": "error", "status", "error"};
* a run whose job wrote no final row (killed, lost, cancelled before it started) ends
  when its executor record (executor.json) is final: ``cancelled`` → completed/cancelled,
  ``lost``/``failed`` → error. A transient ``lost`` (the agent resubmits at once) is
  ignored: ``lost`` counts only when seen on two polls in a row;
* a run the agent never got (its preparation failed or was cancelled) has neither: the
  optional `unsubmitted(run_id)` callback (the portal reads the Run row) gives its final
  state and reason, asked at most every UNSUBMITTED_CHECK_S seconds.

A new attempt (a lost run resubmitted) replaces progress.h5: the hub notices the new
inode, closes the old reader and continues with the new file's rows.

Example::

    hub = ProgressHub(runs_root).start()
    sub = hub.subscribe("k3v9x0q2m7ab")
    message = sub.get(timeout=1.0)       # dict, or None; sub.ended after the final one
    sub.close()
    hub.stop()
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weldsim_hpc.checkpoint import ProgressFormatError
from weldsim_hpc.executors.record import RecordError, RunRecord, read_record
from weldsim_hpc.progress_reader import ProgressReader, to_messages
from weldsim_hpc.results import MetricError, read_metrics
from weldsim_hpc.run_paths import RunPaths
from weldsim_hpc.states import RunState

log = logging.getLogger("weldsim.portal.progress")

TERMINAL_TYPES = ("completed", "error")
UNSUBMITTED_CHECK_S = 2.0

#: run id -> (state, reason) of a run that never reached the agent, or None (see the module docstring)
Unsubmitted = Callable[[str], "tuple[RunState, str | None] | None"]


class Subscription:
    """One watcher of one run: a queue of messages (dicts). Close it when done."""

    def __init__(self, hub: ProgressHub, run_id: str):
        self.hub, self.run_id = hub, run_id
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ended = False  # True once the terminal message has been taken
        self.closed = False  # unsubscribed, or the hub stopped

    def put(self, message: dict[str, Any]) -> None:
        self._queue.put(message)

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message, or None if none came within `timeout` seconds (None/0: don't wait)."""
        try:
            message = self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()
        except queue.Empty:
            return None
        if message["type"] in TERMINAL_TYPES:
            self.ended = True
        return message

    def close(self) -> None:
        self.hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _Channel:
    """Everything the hub knows about one watched run."""

    paths: RunPaths
    subscribers: list[Subscription] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    reader: ProgressReader | None = None
    inode: int | None = None
    final: dict[str, Any] | None = None
    lost_polls: int = 0
    next_unsubmitted_check: float = 0.0


class ProgressHub:
    """See the module docstring. Thread-safe; `poll_s` is the tailing interval (s)."""

    def __init__(self, runs_root: str | os.PathLike, *, poll_s: float = 0.2, unsubmitted: Unsubmitted | None = None):
        self.runs_root = Path(runs_root)
        self.poll_s = poll_s
        self.unsubmitted = unsubmitted
        self._channels: dict[str, _Channel] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------------------
    def start(self) -> ProgressHub:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="weldsim-progress-hub", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop tailing and close every reader (subscribers get nothing more)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            for channel in self._channels.values():
                self._close_reader(channel)
                for sub in channel.subscribers:
                    sub.closed = True  # the stream ends: nothing more will come
            self._channels.clear()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.tick()

    # --- subscribers ---------------------------------------------------------------------------
    def subscribe(self, run_id: str) -> Subscription:
        """Watch run `run_id`: the history so far is queued at once, then new messages."""
        paths = RunPaths.for_id(self.runs_root, run_id)
        sub = Subscription(self, run_id)
        with self._lock:
            channel = self._channels.get(run_id)
            if channel is None:
                channel = self._channels[run_id] = _Channel(paths)
                try:
                    self._step(channel)  # a late joiner gets the history now, not one poll later
                except Exception:  # the hub thread tries again
                    log.exception("run %s: reading its progress failed", run_id)
                    self._close_reader(channel)
            for message in channel.history:
                sub.put(message)
            if channel.final is not None:
                sub.put(channel.final)
            channel.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget `sub`; the last one out closes the run's reader at once."""
        with self._lock:
            sub.closed = True
            channel = self._channels.get(sub.run_id)
            if channel is None or sub not in channel.subscribers:
                return
            channel.subscribers.remove(sub)
            if not channel.subscribers:
                self._close_reader(channel)
                del self._channels[sub.run_id]

    def open_readers(self) -> list[str]:
        """Run ids whose progress file this hub has open now (tests, diagnostics)."""
        with self._lock:
            return sorted(r for r, c in self._channels.items() if c.reader is not None)

    def peek(self, paths: RunPaths) -> tuple[float, str] | None:
        """(percent, phase) of the run's last progress row, through the run's open reader if
        there is one, else opening the file briefly — never a second reader of one run."""
        with self._lock:
            channel = self._channels.get(paths.run_id)
            if channel is not None and channel.reader is not None:
                row, _ = channel.reader.latest()
                return (row.percent, row.phase) if row is not None else None
            return peek_progress(paths)

    def watched(self) -> dict[str, int]:
        """Run id -> number of subscribers."""
        with self._lock:
            return {r: len(c.subscribers) for r, c in self._channels.items()}

    # --- tailing -------------------------------------------------------------------------------
    def tick(self) -> None:
        """One pass over the watched runs (the hub thread calls this every poll_s)."""
        with self._lock:
            for run_id, channel in list(self._channels.items()):
                try:
                    self._step(channel)
                except Exception:  # one broken run must not stop the others' streams
                    log.exception("run %s: tailing its progress failed", run_id)
                    self._close_reader(channel)

    def _publish(self, channel: _Channel, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            if message["type"] in TERMINAL_TYPES:
                channel.final = message
            else:
                channel.history.append(message)
            for sub in channel.subscribers:
                sub.put(message)

    def _close_reader(self, channel: _Channel) -> None:
        if channel.reader is not None:
            try:
                channel.reader.close()
            except Exception:
                log.exception("run %s: closing its progress file failed", channel.paths.run_id)
            channel.reader = None
            channel.inode = None

    def _open_reader(self, channel: _Channel) -> None:
        path = channel.paths.progress_h5
        try:
            inode = os.stat(path).st_ino
            reader = ProgressReader(path)
        except FileNotFoundError:
            return  # not started yet
        except (OSError, ProgressFormatError, KeyError):
            return  # mid-rotation or not readable yet: next poll
        try:
            same = os.stat(path).st_ino == inode
        except FileNotFoundError:
            same = False
        if not same:  # replaced while opening: which file we hold is unclear, try again next poll
            reader.close()
            return
        channel.reader, channel.inode = reader, inode

    def _step(self, channel: _Channel) -> None:
        if channel.final is not None:
            return
        paths = channel.paths
        if channel.reader is not None:  # a new attempt replaced the file: follow the new one
            try:
                rotated = os.stat(paths.progress_h5).st_ino != channel.inode
            except FileNotFoundError:
                rotated = True
            if rotated:
                self._drain(channel)
                self._close_reader(channel)
        if channel.reader is None:
            self._open_reader(channel)
        status = None
        if channel.reader is not None:
            status = self._drain(channel)
            if status is not None and status.state.is_terminal:
                started = channel.reader.header.started_unix
                self._close_reader(channel)  # the attempt writes nothing more
                self._publish(channel, [self._final_from_status(paths, status, started)])
                return
        record = _read_record(paths)
        if record is None and channel.reader is None:
            self._check_unsubmitted(channel)
            return
        if record is None or not record.state.is_terminal:
            channel.lost_polls = 0
            return
        if record.state is RunState.LOST:
            channel.lost_polls += 1
            if channel.lost_polls < 2:
                return  # the agent may be resubmitting it this very moment
        self._close_reader(channel)
        self._publish(channel, [self._final_from_record(paths, record)])

    def _check_unsubmitted(self, channel: _Channel) -> None:
        now = time.monotonic()
        if self.unsubmitted is None or now < channel.next_unsubmitted_check:
            return
        channel.next_unsubmitted_check = now + UNSUBMITTED_CHECK_S
        found = self.unsubmitted(channel.paths.run_id)
        if found is not None and found[0].is_terminal:
            self._publish(channel, [final_message(channel.paths, found[0], found[1], None)])

    def _drain(self, channel: _Channel):
        """Publish the reader's new progress rows; return the latest status row (or None)."""
        reader = channel.reader
        polled = reader.poll()
        self._publish(channel, to_messages(channel.paths.run_id, polled.rows,
                                           started_unix=reader.header.started_unix))
        return polled.status

    # --- terminal messages ----------------------------------------------------------------
    def _final_from_status(self, paths: RunPaths, status, started_unix: float) -> dict[str, Any]:
        record = _read_record(paths)
        cancelled = status.state is RunState.CANCELLED or (
            record is not None and record.cancel_requested and status.state is RunState.INTERRUPTED)
        if cancelled:
            return cancelled_message(paths.run_id, status.wall_s - started_unix)
        if status.state is RunState.COMPLETED:
            summary = metrics_summary(paths)
            compute = summary.get("compute_time_s", status.wall_s - started_unix)
            return {"type": "completed", "run_id": paths.run_id, "status": "completed",
                    "compute_time_s": compute, "metrics_summary": summary}
        return {"type": "error", "run_id": paths.run_id, "status": status.state.value,
                "error": status.message or f"run {status.state.value}"}

    def _final_from_record(self, paths: RunPaths, record: RunRecord) -> dict[str, Any]:
        elapsed = (record.finished_at or time.time()) - record.submitted_at
        return final_message(paths, record.state, record.reason, elapsed)


def final_message(paths: RunPaths, state: RunState, reason: str | None,
                  elapsed_s: float | None) -> dict[str, Any]:
    """The terminal message of a run that ended in `state` without a final status row."""
    if state is RunState.CANCELLED:
        return cancelled_message(paths.run_id, None)
    if state is RunState.COMPLETED:  # completed without a readable status row
        summary = metrics_summary(paths)
        return {"type": "completed", "run_id": paths.run_id, "status": "completed",
                "compute_time_s": summary.get("compute_time_s", elapsed_s), "metrics_summary": summary}
    return {"type": "error", "run_id": paths.run_id, "status": state.value, "error": reason or f"run {state.value}"}


def peek_progress(paths: RunPaths) -> tuple[float, str] | None:
    """(percent, phase) of the last progress row, opening progress.h5 briefly (None if none)."""
    if not paths.progress_h5.exists():
        return None
    try:
        with ProgressReader(paths.progress_h5) as reader:
            row, _ = reader.latest()
    except (OSError, KeyError, ValueError, ProgressFormatError):
        return None
    return (row.percent, row.phase) if row is not None else None


def cancelled_message(run_id: str, compute_time_s: float | None) -> dict[str, Any]:
    return {"type": "completed", "run_id": run_id, "status": "cancelled", "compute_time_s": compute_time_s,
            "metrics_summary": {}}


def metrics_summary(paths: RunPaths) -> dict[str, float]:
    """{name: SI value} from results/metrics.json ({} if there is none)."""
    try:
        return {name: m.value for name, m in read_metrics(paths).items()}
    except MetricError:
        return {}


def _read_record(paths: RunPaths) -> RunRecord | None:
    try:
        return read_record(paths)
    except RecordError:
        return None
