"""Linear solvers of the scipy backend: CG preconditioned by pyamg smoothed aggregation.

    solver = SPDSolver(rtol, atol, max_iterations, what="thermal")
    x = solver(A, b, x0, near_nullspace=B)      # B (n, k): rigid-body modes for elasticity

Convergence: ‖b − A x‖ ≤ max(rtol·‖b‖, atol) (scipy's cg). Systems of at most
`DIRECT_MAX_DOFS` unknowns are solved directly (sparse LU: exact, and faster than AMG
set-up at that size); set it to 0 to force CG everywhere. The AMG hierarchy of a matrix is
kept while the same matrix object is solved again (time steps with a fixed Δt).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ...errors import SolverError

#: up to this many unknowns a sparse direct solve is used (set 0 to always use CG + AMG)
DIRECT_MAX_DOFS = 3000


class SPDSolver:
    """Solves symmetric positive definite systems; remembers the last AMG hierarchy."""

    def __init__(self, rtol: float, atol: float, max_iterations: int, what: str,
                 on_iteration: Callable[[int, float], None] | None = None):
        self.rtol, self.atol, self.max_iterations, self.what = rtol, atol, max_iterations, what
        self.on_iteration = on_iteration
        self.iterations: list[int] = []
        self.residual = 0.0
        self._cache: tuple[int, object] | None = None

    def __call__(self, A: sp.csr_matrix, b: np.ndarray, x0: np.ndarray | None = None,
                 near_nullspace: np.ndarray | None = None, context: str = "", key: object = None,
                 block: int = 1) -> np.ndarray:
        """x = A⁻¹b; `key` (any hashable, e.g. Δt) marks a matrix solved before: its AMG
        hierarchy is reused; block 3 builds the AMG on 3×3 node blocks (vector problems)."""
        A = sp.csr_matrix(A)
        n = A.shape[0]
        if n <= DIRECT_MAX_DOFS:
            x = spla.spsolve(A.tocsc(), b)
            self.iterations.append(1)
            self.residual = float(np.linalg.norm(b - A @ x))
            if not np.isfinite(x).all():
                raise SolverError(f"the {self.what} system is singular{context}: check the boundary conditions")
            return np.asarray(x)
        import pyamg

        if key is None or self._cache is None or self._cache[0] != key:
            B = None if near_nullspace is None else np.asarray(near_nullspace, dtype=np.float64)
            Aamg = A.tobsr(blocksize=(block, block)) if block > 1 else A
            # evolution strength: the classical measure stalls CG on slender elastic bodies
            extra = {"strength": ("evolution", {})} if block > 1 else {}
            ml = pyamg.smoothed_aggregation_solver(Aamg, B=B, symmetry="symmetric", max_coarse=500, **extra)
            self._cache = (key, ml)
        ml = self._cache[1]
        residuals: list[float] = []

        def callback(_xk: np.ndarray) -> None:
            if self.on_iteration is not None:
                self.on_iteration(len(residuals), residuals[-1] if residuals else float("nan"))

        # pyamg's own CG (scipy's cg with the AMG as M stagnates on slender elastic bodies)
        x = ml.solve(b, x0=x0, tol=self.rtol, accel="cg", maxiter=self.max_iterations,
                     residuals=residuals, callback=callback)
        its = max(len(residuals) - 1, 0)
        self.iterations.append(its)
        self.residual = float(np.linalg.norm(b - A @ x))
        target = max(self.rtol * float(np.linalg.norm(b)), self.atol)
        if not np.isfinite(x).all() or self.residual > 1e3 * target:
            raise SolverError(
                f"CG + AMG did not converge for the {self.what} system{context}: residual "
                f"{self.residual:.3e} after {its} iterations (target {target:.3e}); raise "
                "solver.max_iterations, relax solver.rtol or check the boundary conditions and materials")
        return x


def rigid_body_modes(coords: np.ndarray) -> np.ndarray:
    """(3n, 6) translations and rotations about the centroid at blocked dofs (3·node + c)."""
    c = coords - coords.mean(axis=0)
    n = len(coords)
    B = np.zeros((3 * n, 6))
    for k in range(3):
        B[k::3, k] = 1.0
    # rotations e_k × x
    B[0::3, 3], B[1::3, 3], B[2::3, 3] = 0.0, -c[:, 2], c[:, 1]
    B[0::3, 4], B[1::3, 4], B[2::3, 4] = c[:, 2], 0.0, -c[:, 0]
    B[0::3, 5], B[1::3, 5], B[2::3, 5] = -c[:, 1], c[:, 0], 0.0
    return B
