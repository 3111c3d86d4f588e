"""The one vocabulary of run states, shared by progress files, executors and the portal.

Why a str Enum: states travel as text (HDF5 status rows, JSON, database columns) and a
loose string is how "finished" ends up meaning "succeeded". Schedulers map their own
states onto this one enum (one table per scheduler, next to its parser).

    queued       accepted, not started (no progress file yet)
    running      the job runs; its heartbeat is the latest progress row
    completed    finished and succeeded (results written)
    failed       the solver or the entry point raised; not resumable as such
    cancelled    stopped on request
    interrupted  stopped by a signal after writing a checkpoint; resumable (exit code 4)
    lost         no heartbeat for too long, or the scheduler no longer knows the job
"""

from __future__ import annotations

import enum


class RunState(str, enum.Enum):
    """State of a run (or of one attempt of it); ``RunState("running")`` parses text."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    LOST = "lost"

    def __str__(self) -> str:  # f"{state}" gives "running", not "RunState.RUNNING"
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True when the attempt will write nothing more (everything but queued/running)."""
        return self not in (RunState.QUEUED, RunState.RUNNING)


#: the longest state name, the width of the fixed-length state column in progress.h5
STATE_WIDTH = 16
assert max(len(s.value) for s in RunState) <= STATE_WIDTH
