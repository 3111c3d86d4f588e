"""Tailing a live progress.h5: new progress rows, the current state, the heartbeat check.

Why a reader class: the portal (one reader per run per process, however many WebSocket
clients watch) and ``weldsim`` CLI follow a running job by polling its progress file
(layout in `weldsim_hpc.checkpoint`). Each `poll` refreshes the datasets
(``dset.refresh()``) and returns only the rows appended since the previous poll.

Close readers promptly — within seconds of the run ending or the last client leaving:
any open reader makes a writer's reopen of the file fail (errno 11). Opening is cheap
(a few ms), so close when idle and reopen rather than hold files for hours.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple, Sequence

from .checkpoint import ProgressHeader, open_progress, read_header
from .states import RunState


class ProgressRow(NamedTuple):
    """One heartbeat: step, simulated t (s), percent (0..100), phase, message,
    residual (NaN if none), wall_s (wall clock, s since the epoch)."""

    step: int
    t: float
    percent: float
    phase: str
    message: str
    residual: float
    wall_s: float


class StatusRow(NamedTuple):
    """One state change: wall_s (s since the epoch), t (simulated s, NaN if none), state,
    message, attempt."""

    wall_s: float
    t: float
    state: RunState
    message: str
    attempt: int


class Poll(NamedTuple):
    """What one `ProgressReader.poll` found: progress rows new since the last poll, the
    latest status row (None if none yet) and whether status rows were added since."""

    rows: list[ProgressRow]
    status: StatusRow | None
    status_changed: bool


def _text(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "replace")


def _progress_row(r) -> ProgressRow:
    return ProgressRow(int(r["step"]), float(r["t"]), float(r["percent"]), _text(r["phase"]),
                       _text(r["message"]), float(r["residual"]), float(r["wall_s"]))


def _status_row(r) -> StatusRow:
    return StatusRow(float(r["wall_s"]), float(r["t"]), RunState(_text(r["state"])), _text(r["message"]),
                     int(r["attempt"]))


class ProgressReader:
    """SWMR reader of one progress file; use as a context manager and close it soon.

    >>> with ProgressReader(run_dir / "progress.h5") as r:      # doctest: +SKIP
    ...     for msg in r.messages():
    ...         send(msg)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = path
        self._file = open_progress(path)
        self.header: ProgressHeader = read_header(self._file)
        self._progress, self._status = self._file["progress"], self._file["status"]
        self._seen_rows = self._seen_status = 0

    def poll(self) -> Poll:
        """Refresh and return the progress rows since the last poll and the latest status."""
        self._progress.refresh()
        self._status.refresh()
        n = self._progress.shape[0]
        rows = [_progress_row(r) for r in self._progress[self._seen_rows:n]] if n > self._seen_rows else []
        self._seen_rows = n
        ns = self._status.shape[0]
        status = _status_row(self._status[ns - 1]) if ns else None
        changed, self._seen_status = ns != self._seen_status, ns
        return Poll(rows, status, changed)

    def latest(self) -> tuple[ProgressRow | None, StatusRow | None]:
        """The last progress row and the last status row (refreshed; does not move `poll`)."""
        self._progress.refresh()
        self._status.refresh()
        n, ns = self._progress.shape[0], self._status.shape[0]
        return (_progress_row(self._progress[n - 1]) if n else None,
                _status_row(self._status[ns - 1]) if ns else None)

    def is_stale(self, now: float, max_age_s: float) -> bool:
        """True if the state is running but nothing was written for more than max_age_s
        (now: s since the epoch, e.g. time.time()) — the run should be marked lost."""
        row, status = self.latest()
        if status is None or status.state is not RunState.RUNNING:
            return False
        last = max(self.header.started_unix, status.wall_s, row.wall_s if row else -math.inf)
        return now - last > max_age_s

    def messages(self, metrics_summary: dict | None = None) -> list[dict[str, Any]]:
        """Poll and turn the result into DESIGN.md's progress messages (see `to_messages`);
        the final completed/error message comes once, on the poll that first sees it."""
        p = self.poll()
        return to_messages(self.header.run_id, p.rows, p.status if p.status_changed else None,
                           started_unix=self.header.started_unix, metrics_summary=metrics_summary)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ProgressReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # NaN is not JSON


def to_messages(run_id: str, rows: Sequence[ProgressRow], status: StatusRow | None = None, *,
                started_unix: float, metrics_summary: dict | None = None) -> list[dict[str, Any]]:
    """Progress rows (and a final status) as JSON-ready WebSocket/CLI messages.

    {"type": "progress", "run_id", "percent", "phase", "message", "elapsed_s", "step",
    "t", "residual"} per row (elapsed_s since the attempt started; NaN becomes None), then,
    if status is final: {"type": "completed", "run_id", "status", "compute_time_s",
    "metrics_summary"} for completed, else {"type": "error", "run_id", "error", "status"}.
    """
    out: list[dict[str, Any]] = [
        {"type": "progress", "run_id": run_id, "percent": _finite(r.percent), "phase": r.phase,
         "message": r.message, "elapsed_s": r.wall_s - started_unix, "step": r.step, "t": _finite(r.t),
         "residual": _finite(r.residual)} for r in rows]
    if status is not None and status.state.is_terminal:
        if status.state is RunState.COMPLETED:
            out.append({"type": "completed", "run_id": run_id, "status": status.state.value,
                        "compute_time_s": status.wall_s - started_unix,
                        "metrics_summary": dict(metrics_summary or {})})
        else:
            out.append({"type": "error", "run_id": run_id, "status": status.state.value,
                        "error": status.message or f"run {status.state.value}"})
    return out


def is_stale(path: str | os.PathLike, now: float, max_age_s: float) -> bool:
    """Heartbeat check of a progress file (opened and closed here); see `ProgressReader.is_stale`."""
    with ProgressReader(path) as r:
        return r.is_stale(now, max_age_s)
