"""The single-process communicator used where mpi4py is absent (named fake of COMM_WORLD)."""

from __future__ import annotations

from weldsim_hpc.comm import SerialComm


def test_serial_comm_has_mpi_semantics_for_one_rank():
    comm = SerialComm()
    assert (comm.rank, comm.size) == (0, 1)
    assert comm.bcast({"a": 1}) == {"a": 1}
    assert comm.gather(3) == [3] and comm.allgather(3) == [3]
    assert comm.allreduce(2.5) == 2.5
    assert comm.Ibarrier().Test() is True


def test_world_without_mpi4py_is_serial(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mpi4py" else real(name, *a))
    from weldsim_hpc.comm import world

    assert isinstance(world(), SerialComm)
