"""RunPaths: the one object that names every file of a run directory.

A run directory is the contract between a job and the portal (DESIGN.md, "The run
directory")::

    <runs_root>/<run_id>/
      case.json  mesh/{mesh.xdmf, mesh.h5, groups.json}  geometry/
      progress.h5  progress.<n>.h5  results/{metrics.json, fields.xdmf, fields.pvd}
      solver.log  provenance.json  attempts.json

A run id is exactly 12 characters of [a-z0-9], drawn with `secrets`. Every path is built
from a *validated* id, so user text such as "../x" never reaches the file system; other
entries of a runs root (the hidden ``.prepare-*`` build directories of `prepare_run`, the
agent's files) never look like run ids. Building a RunPaths touches nothing on disk.

Example::

    paths = RunPaths.for_id("/scratch/runs", "k3v9x0q2m7ab")
    paths.case_json          # /scratch/runs/k3v9x0q2m7ab/case.json
    paths.progress_attempt(1)  # .../progress.1.h5
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
import string
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import WeldSimError

RUN_ID_LENGTH = 12
RUN_ID_ALPHABET = string.ascii_lowercase + string.digits
_RUN_ID = re.compile(rf"[a-z0-9]{{{RUN_ID_LENGTH}}}")


class RunIdError(WeldSimError):
    """A text that is not a run id (12 characters of a-z and 0-9)."""


def is_run_id(text: object) -> bool:
    """True if `text` is a well-formed run id."""
    return isinstance(text, str) and _RUN_ID.fullmatch(text) is not None


def validate_run_id(text: object) -> str:
    """Return `text` if it is a run id; RunIdError saying what a run id looks like otherwise."""
    if not is_run_id(text):
        shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:37] + "..."
        raise RunIdError(f"invalid run id {shown}: a run id is exactly {RUN_ID_LENGTH} characters "
                         "of lower-case letters a-z and digits 0-9 (e.g. 'k3v9x0q2m7ab')")
    return text  # type: ignore[return-value]


def new_run_id() -> str:
    """A fresh random run id (12 × [a-z0-9] from `secrets`: about 62 bits)."""
    return "".join(secrets.choice(RUN_ID_ALPHABET) for _ in range(RUN_ID_LENGTH))


@dataclass(frozen=True)
class RunPaths:
    """Every file of one run directory. `root` is <runs_root>/<run_id>; nothing is created."""

    root: Path
    run_id: str

    def __post_init__(self) -> None:
        validate_run_id(self.run_id)
        root = Path(self.root)
        if root.name != self.run_id:
            raise RunIdError(f"run directory {root} is not named after its run id '{self.run_id}'")
        object.__setattr__(self, "root", root)

    @classmethod
    def for_id(cls, runs_root: str | os.PathLike, run_id: str) -> "RunPaths":
        """The run `run_id` under `runs_root` (the id is validated before any path is built)."""
        run_id = validate_run_id(run_id)
        return cls(Path(runs_root) / run_id, run_id)

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> "RunPaths":
        """The run whose directory is `path` (its last component must be a run id)."""
        root = Path(path).absolute()
        return cls(root, validate_run_id(root.name))

    @property
    def runs_root(self) -> Path:
        return self.root.parent

    # --- inputs ------------------------------------------------------------------------
    @property
    def case_json(self) -> Path:
        """The validated case as run, materials inlined (see `prepare.load_run_case`)."""
        return self.root / "case.json"

    @property
    def mesh_dir(self) -> Path:
        return self.root / "mesh"

    @property
    def mesh_xdmf(self) -> Path:
        return self.mesh_dir / "mesh.xdmf"

    @property
    def mesh_h5(self) -> Path:
        return self.mesh_dir / "mesh.h5"

    @property
    def groups_json(self) -> Path:
        return self.mesh_dir / "groups.json"

    @property
    def geometry_dir(self) -> Path:
        """Geometry as built (STEP/STL/.msh) or the copied mesh-file source."""
        return self.root / "geometry"

    def geometry_source(self, suffix: str) -> Path:
        """Where a mesh_file case's source file is copied: geometry/source.msh|.xdmf|.step|.stp
        (an XDMF's .h5 and groups.json are copied beside it under their own names)."""
        suffix = suffix.lower()
        if suffix not in (".msh", ".xdmf", ".step", ".stp"):
            raise ValueError(f"geometry source suffix must be .msh, .xdmf, .step or .stp, got {suffix!r}")
        return self.geometry_dir / f"source{suffix}"

    # --- progress ----------------------------------------------------------------------
    @property
    def progress_h5(self) -> Path:
        """The current attempt's progress file (rank 0 writes it, SWMR)."""
        return self.root / "progress.h5"

    def progress_attempt(self, attempt: int) -> Path:
        """progress.<n>.h5: attempt n's file, renamed there before attempt n + 1 starts."""
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt!r}")
        return self.root / f"progress.{attempt}.h5"

    # --- outputs -----------------------------------------------------------------------
    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def metrics_json(self) -> Path:
        return self.results_dir / "metrics.json"

    @property
    def fields_xdmf(self) -> Path:
        return self.results_dir / "fields.xdmf"

    @property
    def fields_pvd(self) -> Path:
        return self.results_dir / "fields.pvd"

    @property
    def solver_log(self) -> Path:
        return self.root / "solver.log"

    @property
    def provenance_json(self) -> Path:
        return self.root / "provenance.json"

    @property
    def attempts_json(self) -> Path:
        return self.root / "attempts.json"


def iter_runs(runs_root: str | os.PathLike) -> Iterator[RunPaths]:
    """The run directories under `runs_root`, sorted by id (anything else is skipped)."""
    root = Path(runs_root)
    if not root.is_dir():
        return
    for entry in sorted(root.iterdir()):
        if is_run_id(entry.name) and entry.is_dir():
            yield RunPaths(entry, entry.name)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON (indented, no NaN/inf) to a temp file beside `path`, then os.replace it.

    Readers see the old file or the new one, never a half-written one.
    """
    path = Path(path)
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; the portal may read as another user
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- attempts.json ---------------------------------------------------------------------
# A list, oldest first, of {"attempt": n (1, 2, ...), "pid": int, "start_time": UNIX s,
# "start_utc": ISO 8601, "scheduler_job_id": str | null, "end_time": UNIX s | null,
# "exit_code": int | null}. Exit codes of the entry point: 0 completed, 2 invalid case,
# 3 solver failed, 4 interrupted but resumable. One writer at a time (the executor that
# owns the run); every write replaces the file atomically.


def read_attempts(paths: RunPaths) -> list[dict[str, Any]]:
    """Every recorded attempt, oldest first ([] before the first one starts)."""
    try:
        data = json.loads(paths.attempts_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeldSimError(f"{paths.attempts_json}: no such file (is {paths.root} a prepared run?)") from None
    except (OSError, ValueError) as exc:
        raise WeldSimError(f"{paths.attempts_json}: unreadable attempts file ({exc})") from None
    if not isinstance(data, list) or not all(isinstance(a, dict) and "attempt" in a for a in data):
        raise WeldSimError(f"{paths.attempts_json}: expected a list of attempt records")
    return data


def _utc(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).isoformat(timespec="seconds")


def _whole(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    return value


def record_attempt_start(paths: RunPaths, attempt: int, pid: int, start_time: float,
                         scheduler_job_id: str | int | None = None) -> dict[str, Any]:
    """Append attempt `attempt` (numbers rise from 1) started by process `pid` at
    `start_time` (UNIX seconds); `scheduler_job_id` is e.g. Slurm's "12345"."""
    _whole("attempt", attempt, 1)
    _whole("pid", pid, 1)
    if isinstance(start_time, bool) or not isinstance(start_time, (int, float)) or not start_time >= 0:
        raise ValueError(f"start_time must be UNIX seconds, got {start_time!r}")
    attempts = read_attempts(paths)
    last = max((a["attempt"] for a in attempts), default=0)
    if attempt <= last:
        raise WeldSimError(f"attempt {attempt} of run {paths.run_id}: attempt {last} is already "
                           f"recorded; the next attempt is {last + 1}")
    entry = {"attempt": attempt, "pid": pid, "start_time": float(start_time), "start_utc": _utc(start_time),
             "scheduler_job_id": None if scheduler_job_id is None else str(scheduler_job_id),
             "end_time": None, "exit_code": None}
    write_json_atomic(paths.attempts_json, attempts + [entry])
    return entry


def record_attempt_end(paths: RunPaths, attempt: int, exit_code: int,
                       end_time: float | None = None) -> dict[str, Any]:
    """Record how attempt `attempt` ended: its exit code, at `end_time` (default: now)."""
    import time

    _whole("exit_code", exit_code)
    attempts = read_attempts(paths)
    for entry in attempts:
        if entry["attempt"] == attempt:
            if entry.get("exit_code") is not None:
                raise WeldSimError(f"attempt {attempt} of run {paths.run_id} already ended "
                                   f"with exit code {entry['exit_code']}")
            entry["exit_code"] = exit_code
            entry["end_time"] = float(time.time() if end_time is None else end_time)
            write_json_atomic(paths.attempts_json, attempts)
            return entry
    known = ", ".join(str(a["attempt"]) for a in attempts) or "none"
    raise WeldSimError(f"run {paths.run_id} has no attempt {attempt} (recorded: {known})")
