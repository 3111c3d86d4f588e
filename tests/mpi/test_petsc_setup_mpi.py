"""A case's allow-listed PETSc options reach the KSP, under a prefix, and do not leak."""

from __future__ import annotations

import pytest
from mpi4py import MPI
from petsc4py import PETSc

from weldsim_hpc.backends.fenicsx.petsc_setup import configure_ksp
from .collective import assert_all  # noqa: E402

COMM = MPI.COMM_WORLD


@pytest.mark.mpi
def test_options_override_defaults_and_are_removed_afterwards():
    ksp = PETSc.KSP().create(COMM)
    ksp.setType("cg")
    ksp.getPC().setType("jacobi")
    ksp.setTolerances(rtol=1e-8)
    configure_ksp(ksp, {"ksp_type": "gmres", "ksp_rtol": 1e-10, "pc_type": "none",
                        "ksp_initial_guess_nonzero": True}, "weldsim_test_")
    assert_all(ksp.getType() == "gmres", ksp.getType())
    assert_all(ksp.getPC().getType() == "none", ksp.getPC().getType())
    assert_all(abs(ksp.getTolerances()[0] - 1e-10) < 1e-20, str(ksp.getTolerances()))
    assert_all(ksp.getInitialGuessNonzero(), "initial guess flag not applied")
    assert_all(not PETSc.Options().hasName("weldsim_test_ksp_type"), "option left in the database")
    ksp.destroy()


@pytest.mark.mpi
def test_no_options_leave_the_solver_alone():
    ksp = PETSc.KSP().create(COMM)
    ksp.setType("cg")
    configure_ksp(ksp, {}, "weldsim_test2_")
    assert_all(ksp.getType() == "cg")
    ksp.destroy()
