"""Errors that arise on some ranks only are raised on every rank (no rank left waiting)."""

from __future__ import annotations

import numpy as np
import pytest
from dolfinx import fem, mesh
from mpi4py import MPI

from weldsim_hpc.backends.fenicsx import compat
from weldsim_hpc.backends.fenicsx.runner import check_finite
from weldsim_hpc.errors import ExpressionError, SolverError
from weldsim_hpc.expressions import parse_expression
from .collective import assert_all  # noqa: E402

COMM = MPI.COMM_WORLD


def raised(fn, kind) -> str:
    try:
        fn()
    except kind as exc:
        return str(exc)
    return ""


@pytest.mark.mpi
def test_expression_failing_on_one_rank_raises_everywhere():
    box = mesh.create_box(COMM, [[0, 0, 0], [1, 0.2, 0.2]], [8, 2, 2], mesh.CellType.tetrahedron)
    u = fem.Function(compat.lagrange_space(box, 1))
    expr = parse_expression("log(x)", "boundary_conditions[0].value")  # -inf on the x = 0 face
    owns_face = bool((u.function_space.tabulate_dof_coordinates()[:, 0] == 0.0).any())
    message = raised(lambda: compat.interpolate_callable(u, lambda x: expr.evaluate(x[0], x[1], x[2])),
                     ExpressionError)
    assert_all("boundary_conditions[0].value" in message and "non-finite" in message, message)
    if COMM.size > 1:  # meaningful only if some rank holds none of the offending points
        assert_all(not all(COMM.allgather(owns_face)), "every rank holds x = 0 points")


@pytest.mark.mpi
def test_nan_on_one_rank_fails_every_rank():
    values = np.ones(10)
    if COMM.rank == COMM.size - 1:
        values[3] = np.nan
    message = raised(lambda: check_finite(COMM, values, "temperature", 7, 0.35), SolverError)
    assert_all("temperature became NaN or infinite at step 7" in message, message)
    assert_all(raised(lambda: check_finite(COMM, np.ones(3), "temperature", 1, 0.0), SolverError) == "")
