"""The job's entry point: `python -m weldsim_hpc.run RUN_DIR [--resume]`.

Runs under `mpirun -n N` or `srun --mpi=pmix -n N` with N = solver.ranks of the run's
case.json (it refuses any other size), or as plain python for one rank. Exit codes:

    0  completed (also: --resume of a run that already completed — nothing to do)
    2  invalid case (bad case.json, wrong rank count, unconstrained structure, a
       checkpoint written for another case or mesh)
    3  the solver failed (no convergence, NaN) — status `failed` with a message
    4  interrupted but resumable: SIGTERM/SIGUSR1 received, checkpoint written

SIGTERM and SIGUSR1 only set a flag; the ranks agree on it at the next step boundary,
write a checkpoint, record `interrupted` and exit 4. An exception that is not raised on
every rank alike (a bug, a lost file) is logged with its rank and ends the whole job with
MPI_Abort within ABORT_AFTER_S seconds, so no rank is left waiting in a collective.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from .errors import RunInterrupted  # raised by backends at a step boundary after a signal

EXIT_COMPLETED, EXIT_INVALID, EXIT_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 4
ABORT_AFTER_S = 20.0
#: fault injection for the tests of the abort path: the rank named here raises at start.
#: The launcher's clean environment never passes it on; only a test sets it explicitly.
FAULT_RANK_VARIABLE = "WELDSIM_TEST_FAULT_RANK"
log = logging.getLogger("weldsim.run")


class StopRequest:
    """SIGTERM/SIGUSR1 set a flag; `agreed()` is the collective decision to stop."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, comm: Any):
        self.comm = comm
        self.received: int | None = None

    def install(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received = signum

    def agreed(self) -> bool:
        """Collective: True on every rank when any rank received a stop signal."""
        return any(self.comm.allgather(self.received is not None))


@dataclass
class RunContext:
    """What a backend needs to run a prepared case (one per attempt)."""

    paths: Any
    case: Any
    comm: Any
    materials: dict
    case_hash: str
    mesh_hash: str
    resume: bool
    stop: StopRequest
    open_writer: Callable[..., Any]
    log: logging.Logger


def _setup_logging(paths: Any, rank: int) -> None:
    """Rank 0 logs to solver.log; every rank logs warnings and errors to stderr with its rank."""
    fmt = logging.Formatter(f"%(asctime)s rank {rank} %(levelname)s %(message)s")
    root = logging.getLogger("weldsim")
    root.setLevel(logging.INFO)
    root.propagate = False  # dolfinx/ffcx configure the root logger; keep our lines once
    if rank == 0 and paths is not None:
        handler = logging.FileHandler(paths.solver_log, encoding="utf-8")
        handler.setFormatter(fmt)
        root.addHandler(handler)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    err.setFormatter(fmt)
    root.addHandler(err)


def _all_ranks_failed(comm: Any) -> bool:
    """Did every rank get here? A non-blocking barrier polled for ABORT_AFTER_S seconds."""
    request = comm.Ibarrier()
    deadline = time.monotonic() + ABORT_AFTER_S
    while time.monotonic() < deadline:
        if request.Test():
            return True
        time.sleep(0.05)
    return False


def _exit_code_for(exc: BaseException) -> int:
    from .errors import SolverError

    return EXIT_FAILED if isinstance(exc, SolverError) else EXIT_INVALID


def _already_completed(paths: Any) -> bool:
    from .progress_reader import ProgressReader
    from .states import RunState

    if not paths.progress_h5.exists() or not paths.metrics_json.exists():
        return False
    with ProgressReader(paths.progress_h5) as reader:
        _, status = reader.latest()
    return status is not None and status.state == RunState.COMPLETED.value


def _mesh_digest(paths: Any) -> Any:
    """The digest of the run's mesh as stored (rank 0); the exception if it is unreadable."""
    from .errors import WeldSimError
    from .mesh import read_mesh_dir

    try:
        return read_mesh_dir(paths.mesh_dir).digest()
    except (WeldSimError, OSError) as exc:
        return exc


def execute(run_dir: str, resume: bool, comm: Any) -> int:
    """Run one attempt on every rank; return the exit code (collective)."""
    from .errors import WeldSimError
    from .prepare import case_hash, load_run_case, run_materials
    from .run_paths import RunPaths
    from .checkpoint import start_attempt
    from .states import RunState

    rank = comm.rank
    try:
        paths = RunPaths.from_dir(run_dir)
    except WeldSimError as exc:
        if rank == 0:
            print(f"weldsim run: {exc}", file=sys.stderr)
        return EXIT_INVALID
    _setup_logging(paths, rank)
    try:
        case = load_run_case(paths)
        materials = run_materials(case)
    except WeldSimError as exc:
        log.error("invalid case.json: %s", exc)
        return EXIT_INVALID
    if comm.size != case.solver.ranks:
        if rank == 0:
            log.error("this run was prepared for %d rank(s) but started on %d: launch it with "
                      "`mpirun -n %d` (or prepare it again with --np %d)",
                      case.solver.ranks, comm.size, case.solver.ranks, comm.size)
        return EXIT_INVALID
    if resume and comm.bcast(_already_completed(paths) if rank == 0 else None, root=0):
        log.info("the run has already completed: nothing to do")
        return EXIT_COMPLETED

    mesh_hash = comm.bcast(_mesh_digest(paths) if rank == 0 else None, root=0)
    if isinstance(mesh_hash, Exception):
        log.error("the run's mesh is unreadable: %s", mesh_hash)
        return EXIT_INVALID
    # both hashes come from what this attempt actually reads, so a checkpoint of another
    # case or mesh is refused even when case.json or the mesh was edited after preparing
    run_case_hash = case_hash(json.loads(paths.case_json.read_text()))
    stop = StopRequest(comm)
    stop.install()
    writers: list[Any] = []

    def open_writer(**kwargs: Any) -> Any:
        writer = start_attempt(paths.root, is_writer=rank == 0, run_id=paths.run_id,
                               case_hash=run_case_hash, mesh_hash=mesh_hash, **kwargs)
        writers.append(writer)
        return writer

    ctx = RunContext(paths, case, comm, materials, run_case_hash, mesh_hash, resume, stop, open_writer, log)
    code, state, message = EXIT_COMPLETED, RunState.COMPLETED, "completed"
    started = time.monotonic()
    try:
        from .backends.registry import select_backend

        if os.environ.get(FAULT_RANK_VARIABLE) == str(rank):
            raise RuntimeError(f"fault injected on rank {rank} ({FAULT_RANK_VARIABLE})")
        backend = select_backend(case.solver.backend, case.analysis)
        log.info("run %s: %s on the %s backend, %d rank(s)%s", paths.run_id, case.analysis, backend,
                 comm.size, " (resume)" if resume else "")
        if backend == "preview":
            from .backends.preview.runner import run_preview

            metrics = run_preview(ctx)
        elif backend == "scipy":
            from .backends.scipy.runner import run_scipy

            metrics = run_scipy(ctx)
        else:
            from .backends.fenicsx.runner import run_fenicsx

            metrics = run_fenicsx(ctx)
        if rank == 0:
            from .results import metric, write_metrics

            metrics["compute_time_s"] = metric("compute_time_s", time.monotonic() - started)
            write_metrics(paths, metrics)
        message = f"completed in {time.monotonic() - started:.1f} s"
    except RunInterrupted as exc:
        code, state, message = EXIT_INTERRUPTED, RunState.INTERRUPTED, str(exc)
    except BaseException as exc:  # noqa: BLE001 - every failure must end all ranks
        if isinstance(exc, WeldSimError):
            log.debug("%s", "".join(traceback.format_exception(exc)).rstrip())
        else:
            log.error("%s", "".join(traceback.format_exception(exc)).rstrip())
        if not _all_ranks_failed(comm):
            log.error("rank %d failed alone: aborting the whole run", rank)
            if writers:
                writers[-1].status(RunState.FAILED, f"rank {rank}: {exc}")
            comm.Abort(EXIT_FAILED)
        code = _exit_code_for(exc) if isinstance(exc, WeldSimError) else EXIT_FAILED
        state, message = RunState.FAILED, str(exc) or type(exc).__name__
    for writer in writers:
        writer.status(state, message)
        writer.close()
    if rank == 0:  # attempts.json belongs to the launcher/executor that started this job
        (log.info if code == 0 else log.error)("%s (exit %d)", message, code)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weldsim_hpc.run", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a run directory made by prepare_run / `weldsim run`")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    from .comm import world

    return execute(args.run_dir, args.resume, world())


if __name__ == "__main__":
    sys.exit(main())
