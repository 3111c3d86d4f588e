"""The job's communicator: MPI's COMM_WORLD where mpi4py is installed, else one process.

The scipy and preview backends run where the Debian MPI stack is absent (a plain
`pip install`); the entry point still talks to "a communicator" so the same code path
serves one rank and many. SerialComm implements the few calls the entry point and the
single-process backends use, with MPI's semantics for one rank.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any


class _DoneRequest:
    def Test(self) -> bool:  # noqa: N802 (mpi4py's spelling)
        return True

    def Wait(self) -> None:  # noqa: N802
        return None


class SerialComm:
    """COMM_WORLD of a single process without MPI."""

    rank = 0
    size = 1

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def gather(self, obj: Any, root: int = 0) -> list:
        return [obj]

    def allgather(self, obj: Any) -> list:
        return [obj]

    def allreduce(self, obj: Any, op: Any = None) -> Any:
        return obj

    def barrier(self) -> None:
        return None

    def Ibarrier(self) -> _DoneRequest:  # noqa: N802
        return _DoneRequest()

    def Abort(self, errorcode: int = 1) -> None:  # noqa: N802
        os._exit(errorcode)


def world() -> Any:
    """mpi4py's COMM_WORLD when mpi4py is installed, else a SerialComm."""
    if importlib.util.find_spec("mpi4py") is None:
        return SerialComm()
    from mpi4py import MPI

    return MPI.COMM_WORLD
