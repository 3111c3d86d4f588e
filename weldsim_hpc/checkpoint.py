"""progress.h5 — the progress, status and checkpoint file of ONE run attempt (HDF5, SWMR).

Why HDF5 with SWMR: the portal and the CLI tail a running job's progress by reading this
file (no broker between a batch job and the web server), and a transient run resumes from
the checkpoints in it. Single-Writer-Multiple-Reader lets readers in other processes see
each appended row as soon as the writer flushes, without locks between them.

Layout (every dataset and attribute exists before SWMR starts; after that rows are only
appended — resize, write, ``flush()`` — and nothing is created or changed):

    /  attrs   format="weldsim-progress", format_version=1, run_id, attempt,
               case_hash, mesh_hash, started_unix (creation time, s since the epoch),
               n_values, field_names (str array), field_layout (free text)
    /progress            compound rows, resizable: step i8, t f8 (simulated time, s),
                         percent f8 (0..100), phase S32, message S200 (UTF-8, truncated),
                         residual f8 (NaN if none), wall_s f8 (s since the epoch)
    /status              compound rows: wall_s f8, t f8, state S16 (a RunState value),
                         message S200, attempt i4 — the state is the LAST row
    /checkpoints/index   compound rows: step i8, t f8, dt f8, row i8 (into fields), wall_s f8
    /checkpoints/fields  float64 (n_checkpoints, n_values), chunked (1, <=131072)

Rules checked on this machine (h5py 3.7 / HDF5 1.10.8, see DESIGN.md):
* Rank 0 is the only writer (serial h5py); other ranks get a writer whose methods do
  nothing, so solver code calls them on every rank without branching on the rank.
* One file per attempt. A SIGKILLed SWMR writer leaves its file unopenable for writing
  (and for plain reads: only ``swmr=True`` readers get in), and any open reader makes a
  writer's reopen fail (errno 11), so nothing ever reopens an old attempt's file for
  writing: `start_attempt` renames progress.h5 to progress.<n>.h5 (read-only from then
  on) and creates a fresh progress.h5; a resume reads the checkpoint from the earlier
  file with ``swmr=True`` (`find_resume_checkpoint`).
* The file is built under a hidden temporary name and renamed to progress.h5 only once
  SWMR is on, so a reader never meets a half-created file.
* SWMR needs POSIX write semantics (ordered writes, working flush): local disks, Lustre
  or GPFS. NOT NFS — on NFS readers can see torn metadata. Put run directories elsewhere.

Readers (`weldsim_hpc.progress_reader`) always open with ``swmr=True`` and must close the
file promptly; `open_progress` checks the format so an unknown version is refused clearly.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from .errors import WeldSimError
from .states import STATE_WIDTH, RunState

PROGRESS_FILE = "progress.h5"
FORMAT_NAME = "weldsim-progress"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MESSAGE_BYTES, PHASE_BYTES = 200, 32
FIELD_CHUNK = 131072  # values per chunk of /checkpoints/fields: 1 MiB, the default chunk cache

PROGRESS_DTYPE = np.dtype([("step", "<i8"), ("t", "<f8"), ("percent", "<f8"), ("phase", f"S{PHASE_BYTES}"),
                           ("message", f"S{MESSAGE_BYTES}"), ("residual", "<f8"), ("wall_s", "<f8")])
STATUS_DTYPE = np.dtype([("wall_s", "<f8"), ("t", "<f8"), ("state", f"S{STATE_WIDTH}"),
                         ("message", f"S{MESSAGE_BYTES}"), ("attempt", "<i4")])
INDEX_DTYPE = np.dtype([("step", "<i8"), ("t", "<f8"), ("dt", "<f8"), ("row", "<i8"), ("wall_s", "<f8")])

_ARCHIVED = re.compile(r"^progress\.(\d+)\.h5$")
log = logging.getLogger(__name__)


class ProgressFormatError(WeldSimError):
    """A file is not a progress file, or one of a format version this code cannot read."""


class CheckpointMismatchError(WeldSimError):
    """A checkpoint was written for a different case or mesh than the run resuming from it."""


class ProgressHeader(NamedTuple):
    """The attributes of a progress file (all set when it was created, never changed)."""

    format_version: int
    run_id: str
    attempt: int
    case_hash: str
    mesh_hash: str
    started_unix: float
    n_values: int
    field_names: tuple[str, ...]
    field_layout: str


class Checkpoint(NamedTuple):
    """One checkpoint: time-step number, simulated time t and step dt (s), and the field
    vector (float64, rank-independent global order, `n_values` long)."""

    step: int
    t: float
    dt: float
    values: np.ndarray


def fit_bytes(text: str, width: int) -> bytes:
    """UTF-8 of text cut to at most `width` bytes without splitting a character."""
    return str(text).encode("utf-8")[:width].decode("utf-8", "ignore").encode("utf-8")


# ----------------------------------------------------------------------------- reading


def open_progress(path: str | os.PathLike):
    """Open a progress file read-only with ``swmr=True`` and check its format.

    Works on a live file, a finished one and one whose writer was killed. Close the
    returned h5py.File soon (use ``with``): an open reader blocks any reopen for writing.
    """
    import h5py

    f = h5py.File(path, "r", swmr=True)
    try:
        fmt, version = f.attrs.get("format"), f.attrs.get("format_version")
        if fmt != FORMAT_NAME:
            raise ProgressFormatError(f"{path}: not a WeldSim progress file (format attribute {fmt!r}, "
                                      f"expected {FORMAT_NAME!r})")
        if version is None or int(version) not in SUPPORTED_VERSIONS:
            raise ProgressFormatError(
                f"{path}: progress format_version {version!r} is not one this weldsim_hpc reads "
                f"{list(SUPPORTED_VERSIONS)}; read it with the weldsim_hpc version that wrote it, or upgrade")
    except BaseException:
        f.close()
        raise
    return f


def read_header(f) -> ProgressHeader:
    """The header of an open progress file (see `open_progress`)."""
    a = f.attrs
    return ProgressHeader(int(a["format_version"]), str(a["run_id"]), int(a["attempt"]), str(a["case_hash"]),
                          str(a["mesh_hash"]), float(a["started_unix"]), int(a["n_values"]),
                          tuple(str(n) for n in a["field_names"]), str(a["field_layout"]))


def read_latest_checkpoint(path: str | os.PathLike, case_hash: str, mesh_hash: str) -> Checkpoint | None:
    """The last checkpoint in a progress file, or None if it holds none.

    Opens with ``swmr=True`` (so a killed writer's file reads fine) and closes at once.
    Raises CheckpointMismatchError if the file was written for another case or mesh hash,
    ProgressFormatError for a foreign or unknown-version file. Call it on rank 0 and
    scatter the values in the new partition's order (resume may use another rank count).
    """
    with open_progress(path) as f:
        head = read_header(f)
        for what, theirs, ours in (("case", head.case_hash, case_hash), ("mesh", head.mesh_hash, mesh_hash)):
            if theirs != ours:
                raise CheckpointMismatchError(
                    f"{path}: the checkpoint was written for {what} hash {theirs[:16]}…, this run has "
                    f"{ours[:16]}…: the {what} changed since, so it cannot resume from it — run without --resume")
        index, fields = f["checkpoints/index"], f["checkpoints/fields"]
        if index.shape[0] == 0:
            return None
        last = index[index.shape[0] - 1]
        row = int(last["row"])
        if row >= fields.shape[0]:
            raise ProgressFormatError(f"{path}: checkpoint index points at field row {row} of {fields.shape[0]}")
        return Checkpoint(int(last["step"]), float(last["t"]), float(last["dt"]), np.asarray(fields[row]))


# ---------------------------------------------------------------------- attempts on disk


def attempt_path(run_dir: str | os.PathLike, n: int) -> Path:
    """Path of the archived file of attempt n: <run_dir>/progress.<n>.h5."""
    return Path(run_dir) / f"progress.{int(n)}.h5"


def archived_attempts(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(n, path) of every progress.<n>.h5 in run_dir, oldest attempt first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("progress.*.h5") if (m := _ARCHIVED.match(p.name))]
    return sorted(found)


def _attempt_of(path: Path) -> int | None:
    try:
        with open_progress(path) as f:
            return int(f.attrs["attempt"])
    except (OSError, KeyError, ValueError, WeldSimError) as exc:
        log.warning("%s: attempt number unreadable (%s); it gets the next free number", path, exc)
        return None


def rotate_progress_file(run_dir: str | os.PathLike) -> int:
    """Rename <run_dir>/progress.h5 to progress.<n>.h5 and make it read-only; return n.

    n is the attempt number stored in the file, or the next free number if that is
    unreadable or taken. Returns 0 when there is no progress.h5. Call it on rank 0 only,
    once the previous attempt's processes are gone; readers that hold the old file open
    keep reading it (a rename does not disturb open files).
    """
    src = Path(run_dir) / PROGRESS_FILE
    if not src.exists():
        return 0
    taken = {n for n, _ in archived_attempts(run_dir)}
    n = _attempt_of(src)
    if n is None or n < 1 or n in taken:
        n = max(taken, default=0) + 1
    dst = attempt_path(run_dir, n)
    os.rename(src, dst)
    os.chmod(dst, dst.stat().st_mode & 0o444)
    return n


def find_resume_checkpoint(run_dir: str | os.PathLike, case_hash: str,
                           mesh_hash: str) -> tuple[Path, Checkpoint] | None:
    """The newest checkpoint among the earlier attempts (progress.<n>.h5, newest first).

    An attempt whose file cannot be opened is skipped with a warning (an older checkpoint
    is still a valid start, only later); a hash mismatch raises CheckpointMismatchError.
    """
    for _, path in reversed(archived_attempts(run_dir)):
        try:
            found = read_latest_checkpoint(path, case_hash, mesh_hash)
        except OSError as exc:
            log.warning("%s: unreadable, looking at earlier attempts (%s)", path, exc)
            continue
        if found is not None:
            return path, found
    return None


# ------------------------------------------------------------------------------ writing


class ProgressWriter:
    """Writer of one attempt's progress.h5 on rank 0; on other ranks every method is a no-op.

    Pass ``is_writer=(comm.rank == 0)``; this module never imports mpi4py. Create it with
    `start_attempt` (which rotates an earlier file first). Errors raise on rank 0 only, so
    the entry point must turn an uncaught exception on any rank into MPI_Abort.

    `progress` is the heartbeat: call it as often as you like (KSP/EPS monitors); it
    writes at most one row per `min_interval_s` seconds unless ``force=True`` (time-step
    boundaries) or the phase changed. Returns True when a row was written.

    Example (serial)::

        with start_attempt(run_dir, is_writer=True, run_id="abc123def456", case_hash=ch,
                           mesh_hash=mh, n_values=u.size, field_names=["T"]) as w:
            w.progress(0, 0.0, 0.0, "assemble", "assembling", force=True)
            w.checkpoint(1, 1e-3, 1e-3, u)
            w.status(RunState.COMPLETED, "done")
    """

    def __init__(self, path: str | os.PathLike, *, is_writer: bool, run_id: str, attempt: int,
                 case_hash: str, mesh_hash: str, n_values: int = 0, field_names: Iterable[str] = (),
                 field_layout: str = "", min_interval_s: float = 2.0):
        self.path, self.is_writer = Path(path), bool(is_writer)
        self.run_id, self.attempt, self.n_values = run_id, int(attempt), int(n_values)
        self.min_interval_s = float(min_interval_s)
        self.state: RunState | None = None
        self._last_beat, self._last_phase = -math.inf, None
        self._file = None
        if self.is_writer:
            self._file = self._create(case_hash, mesh_hash, tuple(field_names), field_layout)

    def _create(self, case_hash: str, mesh_hash: str, field_names: tuple, field_layout: str):
        import h5py

        if self.path.exists():
            raise FileExistsError(f"{self.path} exists: rotate it first (rotate_progress_file); an attempt "
                                  "never reopens another attempt's progress file")
        tmp = self.path.with_name(f".{self.path.name}.creating")
        tmp.unlink(missing_ok=True)  # left by a creation that crashed
        f = h5py.File(tmp, "w-", libver="latest")  # SWMR needs the latest file format
        try:
            f.attrs.update(format=FORMAT_NAME, format_version=FORMAT_VERSION, run_id=self.run_id,
                           attempt=self.attempt, case_hash=case_hash, mesh_hash=mesh_hash,
                           started_unix=time.time(), n_values=self.n_values, field_layout=field_layout)
            f.attrs.create("field_names", list(field_names), dtype=h5py.string_dtype())
            for name, dtype, chunk in (("progress", PROGRESS_DTYPE, 256), ("status", STATUS_DTYPE, 16),
                                       ("checkpoints/index", INDEX_DTYPE, 16)):
                f.create_dataset(name, (0,), maxshape=(None,), dtype=dtype, chunks=(chunk,))
            n = self.n_values
            f.create_dataset("checkpoints/fields", (0, n), maxshape=(None, n), dtype="<f8",
                             chunks=(1, min(n, FIELD_CHUNK)) if n else True)
            self._file = f
            self._status_row(RunState.RUNNING, f"attempt {self.attempt} started", math.nan)
            f.swmr_mode = True
            f.flush()
            os.replace(tmp, self.path)  # readers only ever see a complete file
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        return f

    def _append(self, name: str, row: tuple) -> None:
        dset = self._file[name]
        n = dset.shape[0]
        dset.resize((n + 1,))
        dset[n] = np.array(row, dtype=dset.dtype)

    def _status_row(self, state: RunState, message: str, t: float) -> None:
        self._append("status", (time.time(), t, state.value.encode(), fit_bytes(message, MESSAGE_BYTES),
                                self.attempt))
        self.state = state

    def progress(self, step: int, t: float, percent: float, phase: str, message: str = "",
                 residual: float = math.nan, force: bool = False) -> bool:
        """Heartbeat row (rate-limited, see the class docstring); t in s, percent 0..100."""
        if self._file is None:
            return False
        now = time.monotonic()
        if not (force or phase != self._last_phase or now - self._last_beat >= self.min_interval_s):
            return False
        self._append("progress", (step, t, percent, fit_bytes(phase, PHASE_BYTES),
                                  fit_bytes(message, MESSAGE_BYTES), residual, time.time()))
        self._file.flush()
        self._last_beat, self._last_phase = now, phase
        return True

    def status(self, state: RunState | str, message: str = "", t: float = math.nan) -> None:
        """Append a status row (the run's state is the last one); flushed at once."""
        if self._file is None:
            return
        self._status_row(RunState(state), message, t)
        self._file.flush()

    def checkpoint(self, step: int, t: float, dt: float, values: np.ndarray | None) -> None:
        """Append a checkpoint: the FULL field in rank-independent global order on rank 0.

        Callers gather it first (e.g. comm.gather of owned values + global indices, then
        order on rank 0); other ranks may pass None. Stored bit-exactly as float64. The
        field row is flushed before its index row, so a reader never sees an index row
        without its data.
        """
        if self._file is None:
            return
        vec = np.asarray(values, dtype=np.float64)
        if vec.shape != (self.n_values,):
            raise ValueError(f"checkpoint values: expected shape ({self.n_values},) as declared at "
                             f"start_attempt(n_values=...), got {vec.shape}")
        fields = self._file["checkpoints/fields"]
        row = fields.shape[0]
        fields.resize((row + 1, self.n_values))
        fields[row] = vec
        self._file.flush()
        self._append("checkpoints/index", (step, t, dt, row, time.time()))
        self._file.flush()

    def close(self) -> None:
        """Flush and close (idempotent). Does not write a final state: see `status`."""
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None

    def __enter__(self) -> ProgressWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """On an exception, record failed (interrupted for KeyboardInterrupt/SystemExit)
        unless a final state was already written; then close."""
        try:
            if exc is not None and self._file is not None and not (self.state and self.state.is_terminal):
                state = RunState.FAILED if isinstance(exc, Exception) else RunState.INTERRUPTED
                self.status(state, f"{type(exc).__name__}: {exc}")
        finally:
            self.close()


def start_attempt(run_dir: str | os.PathLike, *, is_writer: bool, run_id: str, case_hash: str,
                  mesh_hash: str, n_values: int = 0, field_names: Iterable[str] = (),
                  field_layout: str = "", attempt: int | None = None,
                  min_interval_s: float = 2.0) -> ProgressWriter:
    """Rotate an existing progress.h5 away and create this attempt's (on the writer only).

    attempt defaults to one more than the highest archived attempt (1 for the first).
    n_values is the checkpoint field size in global order (0: no checkpoints).
    Non-writers get a no-op writer and touch nothing on disk.
    """
    if is_writer:
        rotate_progress_file(run_dir)
        if attempt is None:
            attempt = max((n for n, _ in archived_attempts(run_dir)), default=0) + 1
    return ProgressWriter(Path(run_dir) / PROGRESS_FILE, is_writer=is_writer, run_id=run_id,
                          attempt=attempt or 0, case_hash=case_hash, mesh_hash=mesh_hash, n_values=n_values,
                          field_names=field_names, field_layout=field_layout, min_interval_s=min_interval_s)
