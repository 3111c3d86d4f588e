"""Deleting something that has runs: refuse while runs are unfinished, or cancel them first;
afterwards remove the run directories.

A run is unfinished while it may still change its directory: queued, running, or
interrupted (resumable from its checkpoint, so the agent may start it again).

`cancel_run` is the run agent's canceller, passed in by the caller (the portal takes it
from the agent host it runs): ``cancel_run(run_id)`` must return once the run is final,
or raise a WeldSimError saying why it could not stop it.

Example::

    runs = unfinished_runs(project.runs)
    stop_runs(runs, cancel=True, cancel_run=host.cancel_run, what="project 3")
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from weldsim_hpc.errors import WeldSimError
from weldsim_hpc.run_paths import RunIdError

from ..models import Run, RunState
from .errors import Conflict, Unavailable
from .paths import run_dir

log = logging.getLogger(__name__)

UNFINISHED_STATES = frozenset({RunState.QUEUED.value, RunState.RUNNING.value, RunState.INTERRUPTED.value})
RunCanceller = Callable[[str], None]


def unfinished_runs(runs: Iterable[Run]) -> list[Run]:
    return [r for r in runs if r.state in UNFINISHED_STATES]


def stop_runs(runs: list[Run], *, cancel: bool, cancel_run: RunCanceller | None, what: str) -> None:
    """Conflict if `runs` (the unfinished ones) exist and `cancel` is false; else cancel each.

    Unavailable when there is no canceller; Conflict naming the run if one cannot be stopped.
    """
    if not runs:
        return
    ids = ", ".join(r.run_id for r in runs[:10]) + (" …" if len(runs) > 10 else "")
    if not cancel:
        raise Conflict(f"{what} has {len(runs)} unfinished run{'s' if len(runs) > 1 else ''} ({ids}): "
                       "cancel them first, or delete with ?cancel_runs=true")
    if cancel_run is None:
        raise Unavailable(f"{what} has unfinished runs ({ids}) and no run agent runs in this portal "
                          "to cancel them: cancel them with `weldsim cancel RUN_ID`, then delete again")
    for run in runs:
        try:
            cancel_run(run.run_id)
        except WeldSimError as exc:
            raise Conflict(f"could not cancel run {run.run_id}: {exc}; nothing was deleted") from None


def remove_run_dirs(runs_root: Path, run_ids: Iterable[str]) -> list[str]:
    """Remove the directories of these runs; returns the problems (logged, not raised).

    Called after the database rows are gone: a directory that cannot be removed is
    reported in the log and leaves no row pointing at it.
    """
    problems = []
    for run_id in run_ids:
        try:
            path = run_dir(runs_root, run_id)
        except RunIdError as exc:  # cannot happen for rows (the model validates ids)
            problems.append(str(exc))
            continue
        problems += remove_tree(path)
    return problems


def remove_tree(path: Path) -> list[str]:
    """Remove a directory tree if it exists; the errors as text (also logged)."""
    problems: list[str] = []

    def record(_func, failed, exc_info) -> None:
        problems.append(f"{failed}: {exc_info[1]}")

    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=record)
    for problem in problems:
        log.error("could not remove %s", problem)
    return problems
