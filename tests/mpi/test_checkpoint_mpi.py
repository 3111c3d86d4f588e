"""progress.h5 under MPI: rank 0 writes, the other ranks' writers do nothing, every rank reads.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi tests/mpi
Every assertion is collective (verdicts gathered, the same assert on every rank), so one
failing rank cannot leave the other waiting in a collective call.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from weldsim_hpc.checkpoint import PROGRESS_FILE, find_resume_checkpoint, read_latest_checkpoint, start_attempt
from weldsim_hpc.progress_reader import ProgressReader
from weldsim_hpc.states import RunState
from .collective import assert_all  # noqa: E402

COMM = MPI.COMM_WORLD
N = 1000  # global field size
CASE, MESH = "case-hash", "mesh-hash"


def collective(fn):
    """Run fn() on every rank; an error on any rank fails the test on all of them."""
    try:
        result, message = fn(), ""
    except Exception as exc:  # reported collectively below
        result, message = None, f"{type(exc).__name__}: {exc}"
    assert_all(not message, message)
    return result


@pytest.fixture
def run_dir(tmp_path_factory):
    return COMM.bcast(str(tmp_path_factory.mktemp("run")) if COMM.rank == 0 else None)


def owned_part(step: int) -> tuple[np.ndarray, np.ndarray]:
    """This rank's global indices (a strided, rank-dependent partition) and its values."""
    idx = np.arange(COMM.rank, N, COMM.size)
    return idx, np.sin(idx * 0.01) * step + idx / 3.0


def gather_global(idx: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """The callers' job: the full vector in global order on rank 0, None elsewhere."""
    parts = COMM.gather((idx, values), root=0)
    if COMM.rank != 0:
        return None
    out = np.empty(N)
    for i, v in parts:
        out[i] = v
    return out


@pytest.mark.mpi
def test_rank0_writes_every_rank_reads(run_dir):
    def write():
        written = []
        with start_attempt(run_dir, is_writer=COMM.rank == 0, run_id="mpi000000001", case_hash=CASE,
                           mesh_hash=MESH, n_values=N, field_names=["T"]) as w:
            for step in (1, 2):
                written.append(w.progress(step, step * 0.1, 50.0 * step, "solve", f"step {step}", force=True))
                w.checkpoint(step, step * 0.1, 0.1, gather_global(*owned_part(step)))
            w.status(RunState.COMPLETED, "done")
        return written

    written = collective(write)
    assert_all(written == ([True, True] if COMM.rank == 0 else [False, False]), f"rows written {written}")
    COMM.barrier()  # the file is closed on rank 0 before anyone reads

    def read():
        with ProgressReader(f"{run_dir}/{PROGRESS_FILE}") as r:
            p = r.poll()
        return p, read_latest_checkpoint(f"{run_dir}/{PROGRESS_FILE}", CASE, MESH)

    poll, ck = collective(read)
    assert_all([row.step for row in poll.rows] == [1, 2], f"steps {[row.step for row in poll.rows]}")
    assert_all(poll.status.state is RunState.COMPLETED, f"state {poll.status.state}")
    idx, mine = owned_part(2)
    assert_all(ck.step == 2 and ck.t == 0.2 and ck.values.shape == (N,), f"checkpoint {ck[:3]}")
    assert_all(np.array_equal(ck.values[idx], mine), "this rank's slice differs from what it wrote")


@pytest.mark.mpi
def test_second_attempt_resumes_from_first(run_dir):
    """A resume: rank 0 rotates and creates attempt 2, every rank reads attempt 1's checkpoint."""
    def attempt(n):
        with start_attempt(run_dir, is_writer=COMM.rank == 0, run_id="mpi000000002", case_hash=CASE,
                           mesh_hash=MESH, n_values=N) as w:
            if n == 1:
                w.checkpoint(7, 0.7, 0.1, gather_global(*owned_part(7)))
                w.status(RunState.INTERRUPTED, "SIGTERM")
            return w.attempt

    numbers = [collective(lambda: attempt(1))]
    COMM.barrier()
    numbers.append(collective(lambda: attempt(2)))
    COMM.barrier()
    assert_all(numbers == ([1, 2] if COMM.rank == 0 else [0, 0]), f"attempt numbers {numbers}")
    path, ck = collective(lambda: find_resume_checkpoint(run_dir, CASE, MESH))
    idx, mine = owned_part(7)
    assert_all(path.name == "progress.1.h5" and ck.step == 7, f"{path.name}, step {ck.step}")
    assert_all(np.array_equal(ck.values[idx], mine), "resumed slice differs")
