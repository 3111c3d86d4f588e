"""Helpers shared by the MPI tests: assertions every rank makes alike, work done on rank 0.

An assertion that fails on one rank only would leave the other waiting in its next
collective call; `assert_all` gathers every rank's verdict first, so all fail together.
"""

from __future__ import annotations

import pytest
from mpi4py import MPI

COMM = MPI.COMM_WORLD


def assert_all(ok: bool, message: str = "") -> None:
    """Collective assert: fails on every rank if it fails on any, with each rank's message."""
    verdicts = COMM.allgather((bool(ok), message))
    bad = [f"rank {r}: {m}" for r, (good, m) in enumerate(verdicts) if not good]
    assert not bad, "; ".join(bad)


def on_root(fn):
    """Run fn() on rank 0 only; broadcast its result, or raise its error on every rank."""
    result = None
    if COMM.rank == 0:
        try:
            result = (True, fn())
        except Exception as exc:  # reported on all ranks below
            result = (False, f"{type(exc).__name__}: {exc}")
    ok, value = COMM.bcast(result, root=0)
    COMM.barrier()
    if not ok:
        pytest.fail(f"rank 0 failed: {value}")
    return value
