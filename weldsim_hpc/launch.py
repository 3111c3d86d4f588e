"""Starting a run's MPI job from a clean process, and following it through progress.h5.

Why this module exists: a process that has imported mpi4py/dolfinx and then runs
``mpirun`` with its inherited environment gets rc=1 and no output (DESIGN.md, "Processes,
threads and MPI"). So the job is started here from a process that never imported them,
with an argv list (never a shell string: the run directory is one argument whatever
characters it holds) and an explicit, allow-listed environment with one BLAS/OpenMP
thread per rank.

    cmd = mpi_command("/runs/abc123def456", 4)
    # ['mpirun', '--allow-run-as-root', '--oversubscribe', '-n', '4',
    #  '/work/main/.venv/bin/python', '-m', 'weldsim_hpc.run', '/runs/abc123def456']
    proc = launch(paths.root, 4)               # own session: cancel it as a process group
    code = watch(paths.root, proc, print)      # DESIGN.md progress messages; the exit code

The launcher owns attempts.json for the attempts it starts (pid + start time at launch,
exit code when `watch` sees the end). mpirun's own output (and anything a rank prints
before the entry point opens solver.log) is appended to ``<run>/launcher.log``.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import WeldSimError
from .run_paths import RunPaths, read_attempts, record_attempt_end, record_attempt_start

#: how the entry point is started after the interpreter; a fake entry (tests) replaces it
ENTRY: tuple[str, ...] = ("-m", "weldsim_hpc.run")
LAUNCHER_LOG = "launcher.log"

#: exit codes of the entry point (DESIGN.md "The run directory")
EXIT_COMPLETED, EXIT_INVALID, EXIT_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 4
EXIT_MEANINGS = {0: "completed", 2: "invalid case", 3: "solver failed", 4: "interrupted, resumable"}

# names passed through to the job; everything else (OMPI_*, PMIX_*, SLURM_*, PYTHONPATH …) is dropped
ALLOWED_VARIABLES = ("PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "XDG_CACHE_HOME", "USER", "LOGNAME",
                     "VIRTUAL_ENV")
ALLOWED_PREFIXES = ("LC_",)
FORCED_VARIABLES = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
ROOT_VARIABLES = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
_MPI_MODULES = ("mpi4py", "dolfinx", "petsc4py", "slepc4py")


class LaunchError(WeldSimError):
    """The job could not be started (wrong process, bad arguments, not a prepared run)."""


def _is_root() -> bool:
    return os.geteuid() == 0


def _check_ranks(ranks: object) -> int:
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise LaunchError(f"ranks must be a positive integer, got {ranks!r}")
    return ranks


def mpi_command(run_dir: str | os.PathLike, ranks: int, *, python: str = sys.executable, resume: bool = False,
                as_root: bool | None = None, launcher: str = "mpirun", oversubscribe: bool = True,
                entry: Sequence[str] = ENTRY, wrapper: Sequence[str] = (), mpi: str = "pmix") -> list[str]:
    """The argv that runs the entry point on `ranks` processes (never a shell string).

    ranks 1: plain ``python -m weldsim_hpc.run RUN_DIR`` (no MPI launcher at all).
    launcher "mpirun" (OpenMPI): ``--allow-run-as-root`` when as_root (default: the euid
    is 0), ``--oversubscribe`` so a workstation with fewer cores than ranks still runs.
    launcher "srun" (inside a Slurm allocation): ``srun --mpi=pmix -n N`` — the only
    Slurm MPI plugin that works here (`mpi` picks another). `wrapper` goes between the
    launcher and python (e.g. ``apptainer exec --bind … IMAGE``). run_dir is made
    absolute, so it never reads as an option, and it stays exactly one argv element.
    """
    ranks = _check_ranks(ranks)
    run_dir = os.path.abspath(os.fspath(run_dir))
    job = [*wrapper, os.fspath(python), *entry, run_dir] + (["--resume"] if resume else [])
    if ranks == 1:
        return job
    if launcher == "mpirun":
        as_root = _is_root() if as_root is None else as_root
        return (["mpirun"] + (["--allow-run-as-root"] if as_root else [])
                + (["--oversubscribe"] if oversubscribe else []) + ["-n", str(ranks)] + job)
    if launcher == "srun":
        return ["srun", f"--mpi={mpi}", "-n", str(ranks)] + job
    raise LaunchError(f"unknown MPI launcher {launcher!r} (valid: mpirun, srun)")


def clean_environment(base: Mapping[str, str] | None = None, *, as_root: bool | None = None) -> dict[str, str]:
    """The job's environment: an allow-list of `base` (default os.environ) plus one thread.

    Kept: PATH, HOME, LANG, LANGUAGE, LC_*, TMPDIR, XDG_CACHE_HOME, USER, LOGNAME,
    VIRTUAL_ENV. Dropped: everything else — above all the OMPI_*/PMIX_*/PMI_*/SLURM_*
    variables of an enclosing MPI job, which make the child mpirun fail silently, and
    PYTHONPATH (the interpreter finds the installed package). Set: OMP_NUM_THREADS=1,
    OPENBLAS_NUM_THREADS=1, and OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1 when as_root.
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k in ALLOWED_VARIABLES or k.startswith(ALLOWED_PREFIXES)}
    env.update(FORCED_VARIABLES)
    if _is_root() if as_root is None else as_root:
        env.update(ROOT_VARIABLES)
    return env


def refuse_if_mpi_imported(modules: Mapping[str, object] | None = None) -> None:
    """LaunchError if this process has imported mpi4py (or dolfinx/petsc4py/slepc4py)."""
    loaded = [m for m in _MPI_MODULES if m in (sys.modules if modules is None else modules)]
    if loaded:
        raise LaunchError(f"this process has imported {', '.join(loaded)}: an MPI job started from it fails "
                          "with rc=1 and no output. Launch runs from a process that never imports them "
                          "(the `weldsim` command, an executor worker), not from inside an MPI job.")


def launch(run_dir: str | os.PathLike, ranks: int, resume: bool = False, *, python: str = sys.executable,
           launcher: str = "mpirun", entry: Sequence[str] = ENTRY,
           env: Mapping[str, str] | None = None, pass_fds: Sequence[int] = (),
           scheduler_job_id: str | None = None, wrapper: Sequence[str] = (),
           mpi: str = "pmix", command: Sequence[str] | None = None) -> subprocess.Popen:
    """Start the entry point for the prepared run at `run_dir`; return at once.

    The job gets its own session (start_new_session), so `cancel` reaches mpirun and every
    rank as one process group, and a Ctrl-C in the terminal does not kill it mid-write.
    Its stdout/stderr are appended to <run>/launcher.log; the attempt (pid, start time)
    is appended to attempts.json. `env` defaults to `clean_environment()`. `pass_fds`
    are inherited by the job (an executor passes the run's locked run.lock, so the lock
    lives as long as the job does); `scheduler_job_id` (e.g. $SLURM_JOB_ID inside an
    allocation) goes into attempts.json. `command` replaces the argv built by `mpi_command`
    (the Slurm executor's srun step).
    """
    refuse_if_mpi_imported()
    paths = RunPaths.from_dir(run_dir)
    if not paths.case_json.is_file():
        raise LaunchError(f"{paths.root} is not a prepared run (no case.json); prepare it with `weldsim run CASE`")
    cmd = list(command) if command is not None else mpi_command(
        paths.root, ranks, python=python, resume=resume, launcher=launcher, entry=entry, wrapper=wrapper, mpi=mpi)
    attempt = max((a["attempt"] for a in read_attempts(paths)), default=0) + 1
    started = time.time()
    with open(paths.root / LAUNCHER_LOG, "ab") as log:
        log.write(f"== attempt {attempt} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}: {shlex.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(cmd, env=dict(clean_environment() if env is None else env), cwd=paths.root,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, pass_fds=tuple(pass_fds))
        except OSError as exc:
            raise LaunchError(f"could not start {cmd[0]!r}: {exc}") from None
    record_attempt_start(paths, attempt, proc.pid, started, scheduler_job_id)
    return proc


def pid_alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie has exited: nobody here may ever reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def set_run_ranks(paths: RunPaths, ranks: int | None) -> int:
    """Before a resume: the ranks to run on, written to case.json's solver.ranks if changed.

    The entry point refuses to start when comm.size differs from solver.ranks, and the
    checkpoint does not depend on it (case_hash leaves ranks out), so a resume on another
    number of ranks only rewrites that one field. Refuses while an attempt is still running.
    """
    from .run_paths import write_json_atomic

    data, current = _solver_setting(paths, "ranks")
    if ranks is None or ranks == current:
        return _check_ranks(current)
    data["solver"]["ranks"] = _check_ranks(ranks)
    write_json_atomic(paths.case_json, data)
    return ranks


def set_run_backend(paths: RunPaths, backend: str | None, ranks: int | None = None) -> tuple[str, int | None]:
    """Before a resume: the backend to continue on, written to case.json's solver.backend if
    changed, and the ranks to ask set_run_ranks for. Returns (backend, ranks).

    fenicsx and scipy checkpoint a transient temperature alike (field_order's key order,
    then the heat input and the per-volume peaks) and case_hash leaves solver.backend out,
    so a run interrupted on one resumes on the other. `backend` ("auto" too) must be
    available here and support the run's analysis (`registry.select_backend`); None keeps
    the current one. A backend that is not `parallel` (scipy) runs on one rank: ranks None
    becomes 1, another number is refused. Refuses while an attempt is still running.
    """
    from .backends.registry import BACKENDS, select_backend
    from .run_paths import write_json_atomic

    data, current = _solver_setting(paths, "backend")
    chosen = current if backend is None else select_backend(backend, str(data.get("analysis")))
    if chosen in BACKENDS and not BACKENDS[chosen].parallel:
        if ranks not in (None, 1):
            raise LaunchError(f"the {chosen} backend runs on one process: resume run {paths.run_id} with --np 1")
        ranks = 1
    if chosen != current:
        data["solver"]["backend"] = chosen
        write_json_atomic(paths.case_json, data)
    return chosen, ranks


def _solver_setting(paths: RunPaths, key: str) -> tuple[dict, Any]:
    """(case.json data, its solver.<key>) of a run no attempt of which is still running."""
    import json

    for a in read_attempts(paths):
        if a.get("exit_code") is None and isinstance(a.get("pid"), int) and pid_alive(a["pid"]):
            raise LaunchError(f"run {paths.run_id}: attempt {a['attempt']} (pid {a['pid']}) is still running")
    try:
        data = json.loads(paths.case_json.read_text(encoding="utf-8"))
        return data, data["solver"][key]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LaunchError(f"{paths.case_json}: unreadable or without solver.{key} ({exc}); "
                          "is it a prepared run?") from None


def cancel(proc: subprocess.Popen, sig: int = signal.SIGUSR1) -> None:
    """Ask the job to stop: signal its whole process group (mpirun and its ranks).

    The default is SIGUSR1, not SIGTERM: the entry point answers either with a checkpoint
    and exit code 4, but OpenMPI's mpirun treats a SIGTERM of its own as an abort and
    exits 1, while it forwards SIGUSR1 to the ranks and passes their exit code 4 on
    (checked here with OpenMPI 4.1). No-op once the job has ended.
    """
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def exit_code(returncode: int) -> int:
    """A Popen returncode as a shell exit code: killed by signal N (-N) becomes 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _attempt_of(paths: RunPaths, pid: int) -> dict[str, Any] | None:
    try:
        attempts = read_attempts(paths)
    except WeldSimError:
        return None
    return next((a for a in reversed(attempts) if a.get("pid") == pid and a.get("exit_code") is None), None)


def _with_metrics(paths: RunPaths, message: dict[str, Any]) -> dict[str, Any]:
    """A completed message with an empty metrics_summary gets {name: SI value} from metrics.json."""
    if message["type"] != "completed" or message.get("metrics_summary"):
        return message
    from .results import MetricError, read_metrics

    try:
        summary = {name: m.value for name, m in read_metrics(paths).items()}
    except MetricError:
        summary = {}
    return {**message, "metrics_summary": summary}


def _final_message(run_id: str, code: int, elapsed_s: float | None) -> dict[str, Any]:
    if code == EXIT_COMPLETED:
        return {"type": "completed", "run_id": run_id, "status": "completed", "compute_time_s": elapsed_s,
                "metrics_summary": {}}
    status = "interrupted" if code == EXIT_INTERRUPTED else "failed"
    meaning = EXIT_MEANINGS.get(code, "unexpected exit")
    return {"type": "error", "run_id": run_id, "status": status,
            "error": f"the job exited with code {code} ({meaning}); see solver.log and {LAUNCHER_LOG}"}


def watch(run_dir: str | os.PathLike, proc: subprocess.Popen, on_message: Callable[[dict[str, Any]], None], *,
          poll_s: float = 0.5) -> int:
    """Follow the job: call on_message with each DESIGN.md progress message; return its exit code.

    progress.h5 is opened only once it exists and was created by this attempt (a resumed
    run's previous file is ignored until the job rotates it away), and closed as soon as
    its state is final or the job has ended: an open reader blocks a writer's reopen.
    Exactly one final message (completed or error) is sent; when the job wrote none (it
    died before progress.h5, or was killed) one is made from the exit code. The exit code
    is also recorded in attempts.json. Signals: -N becomes 128 + N (see `exit_code`).
    """
    from .checkpoint import ProgressFormatError  # h5py is imported only by a watching process
    from .progress_reader import ProgressReader

    paths = RunPaths.from_dir(run_dir)
    attempt = _attempt_of(paths, proc.pid)
    started = attempt["start_time"] if attempt else -math.inf
    reader: ProgressReader | None = None
    done = final_sent = False
    try:
        while True:
            ended = proc.poll() is not None
            if reader is None and not done and paths.progress_h5.exists():
                try:
                    reader = ProgressReader(paths.progress_h5)
                except (OSError, ProgressFormatError, KeyError):
                    reader = None  # mid-rotation or unreadable for now: try again next round
                else:
                    if reader.header.started_unix < started:  # an earlier attempt's file (same clock)
                        reader.close()
                        reader = None
            if reader is not None:
                for message in reader.messages():
                    final_sent |= message["type"] in ("completed", "error")
                    on_message(_with_metrics(paths, message))
                if final_sent:
                    done = True
                    reader.close()
                    reader = None
            if ended:
                break
            time.sleep(poll_s)
    finally:
        if reader is not None:
            reader.close()
    code = exit_code(proc.wait())
    if not final_sent:
        elapsed = time.time() - started if attempt else None
        on_message(_with_metrics(paths, _final_message(paths.run_id, code, elapsed)))
    if attempt is not None:
        record_attempt_end(paths, attempt["attempt"], code)
    return code
