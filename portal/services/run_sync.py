"""Mirroring run directories into Run, Metric and Artifact rows (the reconciler's core).

The run directory is the source of truth (DESIGN.md, "The run directory"); a Run row is a
copy for queries. `read_run_directory` turns a directory into a `RunSnapshot` (files
only: executor.json, attempts.json, progress.h5's last row, results/metrics.json and the
files worth downloading); `apply_snapshot` writes the differences to the rows and
nothing else, so a second pass over an unchanged directory changes nothing, and two
passes at once (the periodic reconciler and a request) end in the same rows: a metric or
artifact inserted by the other pass meanwhile (unique on run+name, run+path) makes this
pass roll back and start again, as does SQLite's "database is locked".

Example::

    changed = sync_run(db.session, "k3v9x0q2m7ab", settings.runs_root)
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from weldsim_hpc.executors.record import RecordError, RunRecord, read_record
from weldsim_hpc.results import MetricError, read_metrics
from weldsim_hpc.run_paths import RunPaths, read_attempts
from weldsim_hpc.states import RunState

from ..models import Artifact, Metric, Run

log = logging.getLogger("weldsim.portal.sync")

#: files of a run directory never offered for download (the executor's own bookkeeping)
PRIVATE_FILES = {"executor.json", "attempts.json", "run.lock"}
RETRIES = 8

ProgressPeek = Callable[[RunPaths], "tuple[float, str] | None"]


def artifact_kind(rel: str) -> str | None:
    """The Artifact.kind of a file at `rel` (posix, relative to the run directory), or None
    for files not offered (hidden temporaries, the executor's records).

    fields_xdmf/fields_hdf5/fields_pvd/fields_vtu (results/), metrics, results_json,
    mesh_xdmf/mesh_hdf5/mesh_groups (mesh/), geometry (geometry/), log (*.log),
    progress_hdf5 (progress.h5, progress.<n>.h5), provenance, case.
    """
    parts = rel.split("/")
    name = parts[-1]
    if name.startswith(".") or rel in PRIVATE_FILES:
        return None
    suffix = Path(name).suffix.lower()
    top = parts[0] if len(parts) > 1 else ""
    if top == "results":
        if name == "metrics.json":
            return "metrics"
        return {".xdmf": "fields_xdmf", ".h5": "fields_hdf5", ".pvd": "fields_pvd", ".vtu": "fields_vtu",
                ".pvtu": "fields_vtu", ".json": "results_json", ".csv": "results_csv"}.get(suffix, "results_file")
    if top == "mesh":
        return {".xdmf": "mesh_xdmf", ".h5": "mesh_hdf5", ".json": "mesh_groups"}.get(suffix)
    if top == "geometry":
        return "geometry"
    if top:
        return None
    if suffix == ".log":
        return "log"
    if name == "progress.h5" or (name.startswith("progress.") and suffix == ".h5"):
        return "progress_hdf5"
    return {"provenance.json": "provenance", "case.json": "case"}.get(name)


def scan_artifacts(paths: RunPaths) -> dict[str, tuple[str, int]]:
    """path (relative, posix) -> (kind, size in bytes) of every file worth offering."""
    found: dict[str, tuple[str, int]] = {}
    root = paths.root
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            full = Path(directory) / name
            rel = full.relative_to(root).as_posix()
            kind = artifact_kind(rel)
            if kind is None:
                continue
            try:
                found[rel] = (kind, full.stat().st_size)
            except FileNotFoundError:  # renamed meanwhile (progress.h5 at a new attempt)
                continue
    return found


@dataclass
class RunSnapshot:
    """What a run directory says now, in the Run row's terms."""

    state: RunState
    reason: str | None = None
    attempts: int = 0
    scheduler_job_ids: list[str] = field(default_factory=list)
    exit_code: int | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    progress_percent: float | None = None
    phase: str | None = None
    compute_time_s: float | None = None
    metrics: dict[str, tuple[float, str]] = field(default_factory=dict)
    artifacts: dict[str, tuple[str, int]] = field(default_factory=dict)


def _utc(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def peek_progress(paths: RunPaths) -> tuple[float, str] | None:
    """(percent, phase) of the last progress row, opening progress.h5 briefly (None if none)."""
    from ..progress_hub import peek_progress as peek

    return peek(paths)


#: how long a `lost` record may wait for the agent's resubmission before it counts as final
LOST_SETTLE_S = 10.0


def is_transiently_lost(record: RunRecord, max_resubmissions: int) -> bool:
    """A `lost` record the agent is about to resubmit (it writes lost, then queued at once);
    one left so for LOST_SETTLE_S (the agent died in between) counts as lost."""
    return (record.state is RunState.LOST and not record.cancel_requested
            and record.resubmissions < max_resubmissions and time.time() - record.updated_at < LOST_SETTLE_S)


def read_run_directory(paths: RunPaths, *, progress: ProgressPeek = peek_progress,
                       max_resubmissions: int = 1) -> RunSnapshot | None:
    """The snapshot of a submitted run; None if the agent has no record of it yet
    (not prepared, or prepared and not handed over) or its record says `lost` for the
    instant before the agent resubmits it."""
    try:
        record = read_record(paths)
    except RecordError:
        return None
    if is_transiently_lost(record, max_resubmissions):
        return None
    try:
        attempts = read_attempts(paths)
    except Exception:  # noqa: BLE001  (unreadable: keep what the row says)
        attempts = []
    snap = RunSnapshot(state=record.state, reason=record.reason, attempts=len(attempts),
                       scheduler_job_ids=[str(a["scheduler_job_id"]) for a in attempts if a.get("scheduler_job_id")],
                       exit_code=attempts[-1].get("exit_code") if attempts else None,
                       started_at=_utc(attempts[0].get("start_time")) if attempts else None,
                       finished_at=_utc(record.finished_at) if record.state.is_terminal else None)
    peeked = progress(paths) if attempts else None
    if peeked is not None:
        snap.progress_percent = min(max(float(peeked[0]), 0.0), 100.0) if peeked[0] == peeked[0] else None
        snap.phase = (peeked[1] or None) and peeked[1][:64]
    if record.state is RunState.COMPLETED:
        snap.progress_percent = 100.0
    if paths.metrics_json.exists():
        try:
            snap.metrics = {name: (m.value, m.unit) for name, m in read_metrics(paths).items()}
        except MetricError as exc:
            log.warning("run %s: %s", paths.run_id, exc)
    if "compute_time_s" in snap.metrics:
        snap.compute_time_s = snap.metrics["compute_time_s"][0]
    snap.artifacts = scan_artifacts(paths)
    return snap


def apply_snapshot(session: Session, run: Run, snap: RunSnapshot) -> bool:
    """Write the snapshot's differences into `run` and its metrics and artifacts (not
    committed); True if anything changed."""
    changed = False
    values: dict[str, Any] = {
        "state": snap.state.value, "reason": snap.reason, "attempts": snap.attempts,
        "scheduler_job_ids": snap.scheduler_job_ids, "exit_code": snap.exit_code,
        "started_at": snap.started_at, "finished_at": snap.finished_at,
    }
    if snap.progress_percent is not None:
        values["progress_percent"] = snap.progress_percent
    if snap.phase is not None:
        values["phase"] = snap.phase
    if snap.compute_time_s is not None:
        values["compute_time_s"] = snap.compute_time_s
    for name, value in values.items():
        if getattr(run, name) != value:
            setattr(run, name, value)
            changed = True
    fresh = {"populate_existing": True}
    metrics = {m.name: m for m in session.scalars(
        select(Metric).where(Metric.run_id == run.run_id).execution_options(**fresh))}
    for name, (value, unit) in snap.metrics.items():
        row = metrics.get(name)
        if row is None:
            session.add(Metric(run_id=run.run_id, name=name, value=value, unit=unit))
            changed = True
        elif (row.value, row.unit) != (value, unit):
            row.value, row.unit = value, unit
            changed = True
    artifacts = {a.path: a for a in session.scalars(
        select(Artifact).where(Artifact.run_id == run.run_id).execution_options(**fresh))}
    for rel, (kind, size) in snap.artifacts.items():
        row = artifacts.get(rel)
        if row is None:
            session.add(Artifact(run_id=run.run_id, kind=kind, path=rel, size_bytes=size))
            changed = True
        elif (row.kind, row.size_bytes) != (kind, size):
            row.kind, row.size_bytes = kind, size
            changed = True
    for rel, row in artifacts.items():
        if rel not in snap.artifacts:
            session.delete(row)
            changed = True
    return changed


def is_retryable(exc: Exception) -> bool:
    """A concurrent writer's unique row (IntegrityError) or SQLite's 'database is locked'."""
    if isinstance(exc, IntegrityError):
        return True
    return isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower()


def in_transaction(session: Session, work: Callable[[], Any], what: str) -> Any:
    """Run `work()` and commit; on a retryable error roll back and run it again (backoff)."""
    for attempt in range(RETRIES):
        try:
            result = work()
            session.commit()
            return result
        except (IntegrityError, OperationalError) as exc:
            session.rollback()
            if not is_retryable(exc) or attempt == RETRIES - 1:
                raise
            log.info("%s: retrying after %s", what, type(exc).__name__)
            time.sleep(0.05 * 2 ** attempt)
    raise AssertionError("unreachable")


def sync_run(session: Session, run_id: str, runs_root: str | os.PathLike, *,
             progress: ProgressPeek = peek_progress, max_resubmissions: int = 1) -> bool:
    """Bring the row of `run_id` up to date with its run directory; True if it changed.

    The directory is read before the transaction starts (short write transactions);
    nothing happens when the run has no executor record yet or the row is gone.
    """
    paths = RunPaths.for_id(runs_root, run_id)
    snap = read_run_directory(paths, progress=progress, max_resubmissions=max_resubmissions)
    if snap is None:
        return False

    def work() -> bool:
        run = session.get(Run, run_id, populate_existing=True)
        return False if run is None else apply_snapshot(session, run, snap)

    return in_transaction(session, work, f"syncing run {run_id}")


def end_run(session: Session, run_id: str, state: RunState, reason: str | None) -> bool:
    """Mark a run that never reached the agent as final (failed preparation, cancelled
    while preparing); a row that is final already is left alone. True if it changed."""

    def work() -> bool:
        run = session.get(Run, run_id, populate_existing=True)
        if run is None or RunState(run.state).is_terminal:
            return False
        run.state, run.reason = state.value, reason
        run.finished_at = dt.datetime.now(dt.timezone.utc)
        return True

    return in_transaction(session, work, f"ending run {run_id}")


#: a queued row without a run directory is failed after this long (its preparer is gone)
PREPARE_GRACE_S = 120.0
NOT_PREPARED = ("the run directory was never completed: the portal stopped while preparing it; "
                "submit the case again")


def _staging_exists(runs_root: Path, run_id: str) -> bool:
    """True while a `prepare_run` build directory for this run id exists (.prepare-*/<id>)."""
    return any(Path(runs_root).glob(f".prepare-*/{run_id}"))


def reconcile(session: Session, runs_root: str | os.PathLike, *, preparing: Callable[[str], bool],
              hand_over: Callable[[str, Run], None], progress: ProgressPeek = peek_progress,
              max_resubmissions: int = 1, now: dt.datetime | None = None) -> list[str]:
    """One pass over every unfinished Run row (queued, running); returns the ids it changed.

    * a run the agent knows (executor.json) is synced from its directory;
    * a prepared run the agent never got (the portal stopped between preparing and
      handing it over) is handed over now — `hand_over(run_id, run)`; the agent refuses
      a second submission of one run, so concurrent passes start it once;
    * a run with no directory whose preparer is gone (not `preparing(run_id)` in this
      process, no build directory, submitted over PREPARE_GRACE_S ago) is failed.

    Idempotent: a pass over unchanged directories changes nothing and submits nothing.
    """
    runs_root = Path(runs_root)
    now = now or dt.datetime.now(dt.timezone.utc)
    rows = session.execute(select(Run.run_id, Run.submitted_at)
                           .where(Run.state.in_((RunState.QUEUED.value, RunState.RUNNING.value)))
                           .order_by(Run.submitted_at)).all()
    session.commit()  # end the read transaction: each run below gets its own short one
    changed = []
    for run_id, submitted_at in rows:
        if preparing(run_id):
            continue
        paths = RunPaths.for_id(runs_root, run_id)
        try:
            read_record(paths)
        except RecordError:
            if paths.case_json.is_file():
                run = session.get(Run, run_id)
                if run is not None:
                    hand_over(run_id, run)
                session.commit()
            elif _staging_exists(runs_root, run_id) or (now - submitted_at).total_seconds() < PREPARE_GRACE_S:
                continue
            else:
                if end_run(session, run_id, RunState.FAILED, NOT_PREPARED):
                    changed.append(run_id)
                continue
        try:
            if sync_run(session, run_id, runs_root, progress=progress, max_resubmissions=max_resubmissions):
                changed.append(run_id)
        except Exception:  # one broken run directory must not stop the others' sync
            session.rollback()
            log.exception("run %s: syncing it from %s failed", run_id, paths.root)
    return changed
