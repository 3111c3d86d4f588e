"""Modal analysis on one node (numpy/scipy) — the formulation of `backends/fenicsx/modal.py`:

    K φ = ω² M φ,   K = ∫ σ(φ):ε(v),   M = ∫ ρ φ·v,   f = ω / 2π   (Hz)

u is vector Lagrange P(case.effective_element_order) (blocked dofs 3·dof + c, fe.Space);
ρ, λ, μ per cell from the volume groups.

Boundary conditions: `fixed` groups and the given components of `displacement` groups are
constrained to ZERO (prescribed values are ignored); the constrained dofs are ELIMINATED
(the eigenproblem lives on the free dofs) — the same spectrum as fenicsx's K diag 1 /
M diag 0, whose constrained dofs map to an infinite eigenvalue. Other BC types are ignored.

Rigid-body modes: the rigid motions (3 translations, 3 rotations about the bounding-box
centre) that the constraints leave free — six for a free-free body, none for a clamped
one — are M-orthonormalised (R, RᵀMR = I) and DEFLATED: the shift-and-invert operator is
P (K − σM)⁻¹ with P = I − R Rᵀ M the M-orthogonal projector onto their complement, so the
rigid subspace maps to the eigenvalue 0 of the operator, which Lanczos (largest |ν|)
never returns. Any remaining mode below RIGID_CUTOFF × target is dropped too (counted in
`ModalResult.rigid_dropped`).

Solver: scipy.sparse.linalg.eigsh (ARPACK, mode 'normal' shift-and-invert) with
σ = (2π case.target_frequency_Hz)², one SuperLU factorisation of K_ff − σ M_ff; it asks
for EXTRA_MODES more than solver.modes_wanted (ARPACK's k-th Ritz value can otherwise be
the neighbour of the true k-th nearest) and keeps the modes_wanted nearest σ. Modes are renumbered 1..n in ascending
frequency, mass-normalised (φᵀMφ = 1, m·kg^-½) and signed so that ∫ρ φ·g > 0 for the same
fixed generic field g as fenicsx (shapes reproducible across backends, degenerate pairs
excepted).

Classification (physics/modal.py): the integrals of the fenicsx `_Fractions` evaluated by
quadrature over all cells at once — ∫ρ|u|² and ∫ρ u_z² from the mass matrices, ∫ρ u_θ²
with a rule of degree 2p + 2 (u_θ is not polynomial), per-cell ∫ρ u_x, ∫ρ u_y, ∫ρ u_z,
∫ρ u_z (x − c_x), ∫ρ u_z (y − c_y) and the slices' mass moments exactly; slices binned by
the cell midpoint's z into `n_slices` (32) equal slices of the bounding box.

Public API::

    solve_modal(mesh, case, materials, *, on_progress=None) -> ModalResult
    ModalProblem(mesh, case, materials)            the spaces and assembled K, M, constraints
    ModalResult, ModalSolverError, Fractions, rigid_basis, sign_field
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ...case import CaseSpec, DisplacementBC, FixedBC
from ...errors import SolverError, WeldSimError
from ...materials import Material
from ...physics import modal as phys
from .elasticity import _entities
from .fe import Space, tet_basis, tet_rule
from .thermal import cellwise, material_for, volume_groups

ProgressCallback = Callable[[int, float, float, str, str, float], None]
EIGSH_TOL = 1e-12        # ARPACK relative accuracy of the Ritz values
RIGID_CUTOFF = 1e-3      # modes below this × target (Hz) are rigid-body leftovers
DEFAULT_SLICES = 32
EXTRA_MODES = 6          # eigenpairs asked for beyond modes_wanted (the nearest are kept)
PHASE = "modal"


class ModalSolverError(SolverError):
    """ARPACK found no eigenpair, or the shift-and-invert factorisation failed."""


@dataclass
class ModalResult:
    """What solve_modal returns. Hz, m·kg^-½.

    shapes: (n_modes, n_dofs, 3) mass-normalised mode shapes on `space`, ascending
    frequencies_Hz: their frequencies (mode k = shapes[k - 1])
    summary: physics.modal.ModalSummary; n_rigid_deflated: rigid motions deflated (6
    free-free, 0 clamped); rigid_dropped: converged modes below RIGID_CUTOFF × target.
    """

    shapes: np.ndarray
    frequencies_Hz: np.ndarray
    space: Space
    summary: phys.ModalSummary
    n_rigid_deflated: int
    rigid_dropped: int
    n_converged: int
    iterations: int
    n_dofs: int

    @property
    def modes(self) -> tuple[phys.Mode, ...]:
        return self.summary.modes


def vector_mass_local(space: Space, rho: np.ndarray) -> np.ndarray:
    """∫ ρ u·v per cell, (m, 3·ndof, 3·ndof) blocked (a, i)."""
    m = space.mass_local(rho)
    nd = m.shape[1]
    return (m[:, :, None, :, None] * np.eye(3)[None, None, :, None, :]).reshape(-1, 3 * nd, 3 * nd)


def zero_dirichlet_dofs(mesh: Any, case: CaseSpec, space: Space) -> np.ndarray:
    """Blocked dofs constrained to zero by the fixed/displacement groups (sorted, unique)."""
    out = [np.zeros(0, dtype=np.int64)]
    for i, bc in enumerate(case.boundary_conditions):
        where = f"boundary_conditions[{i}]"
        if isinstance(bc, FixedBC):
            dim, ents = _entities(mesh, bc.boundary, f"{where}.boundary")
            d = space.entity_dofs(dim, ents)
            out += [3 * d + c for c in range(3)]
        elif isinstance(bc, DisplacementBC):
            dim, ents = _entities(mesh, bc.boundary, f"{where}.boundary")
            d = space.entity_dofs(dim, ents)
            out += [3 * d + c for c, raw in enumerate(bc.value) if raw is not None]
    return np.unique(np.concatenate(out))


def rigid_basis(space: Space, constrained: np.ndarray, M: sp.spmatrix) -> np.ndarray:
    """(3n, k) M-orthonormal rigid motions that vanish on every constrained dof (k ≤ 6);
    rotations about the bounding-box centre of the mesh, scaled by its size (as fenicsx)."""
    pts = space.points[np.unique(space.cells)]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, size = 0.5 * (lo + hi), max(float(np.max(hi - lo)), 1e-300)
    p = (space.dof_coords - centre) / size
    n = space.n_dofs
    basis = np.zeros((6, n, 3))
    for k in range(3):
        basis[k, :, k] = 1.0
        basis[3 + k] = np.cross(np.eye(3)[k], p)
    basis = basis.reshape(6, -1)
    G = basis[:, constrained] @ basis[:, constrained].T
    w, Q = np.linalg.eigh(G)
    free = Q[:, w <= 1e-10 * max(float(w[-1]), 1.0)]
    if free.shape[1] == 0:
        return np.zeros((3 * n, 0))
    R = (free.T @ basis).T
    R[constrained] = 0.0
    gram = R.T @ (M @ R)
    return R @ np.linalg.inv(np.linalg.cholesky(gram)).T


def sign_field(space: Space) -> np.ndarray:
    """The generic field g (blocked) whose M-product fixes the sign of a mode (fenicsx's)."""
    xyz = space.dof_coords
    return (np.column_stack([1.0 + 0.31 * xyz[:, 1], 0.7 + 0.53 * xyz[:, 2], 0.4 + 0.17 * xyz[:, 0]])
            * np.array([1.0, 1.1, 1.3])).ravel()


class Fractions:
    """The energy fractions of a mode (physics.modal.ModeFractions), fenicsx's integrals."""

    def __init__(self, space: Space, rho: np.ndarray, M: sp.spmatrix, n_slices: int = DEFAULT_SLICES):
        self.space, self.M = space, M
        p = space.order
        self.Ms = space.assemble(space.mass_local(rho))                  # scalar ρ-mass
        xi, w = tet_rule(p + 2)
        Wq = (rho * space.absdet)[:, None] * w[None]                       # (m, nq)
        X = space.physical(xi)                                             # (m, nq, 3)
        mass = Wq.sum()
        c = np.einsum("cq,cqi->i", Wq, X[..., :2]) / mass
        xr, yr = X[..., 0] - c[0], X[..., 1] - c[1]
        N, _ = tet_basis(p, xi)
        self.N, self.Wq, self.xr, self.yr = N, Wq, xr, yr
        pts = space.points[np.unique(space.cells)]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        z = space.points[space.cells].mean(axis=1)[:, 2]
        dz = max(float(hi[2] - lo[2]), 1e-300) / n_slices
        self.slice_of = np.clip(((z - lo[2]) / dz).astype(np.int64), 0, n_slices - 1)
        self.n_slices = n_slices
        m, Xs, Ys, XX, XY, YY = (self._per_slice((Wq * q).sum(axis=1))
                                 for q in (1.0, xr, yr, xr * xr, xr * yr, yr * yr))
        self.slice_mass, self.has = m, m > 0
        mm = np.where(self.has, m, 1.0)
        self.xbar, self.ybar = Xs / mm, Ys / mm
        J = np.stack([np.stack([XX - m * self.xbar**2, XY - m * self.xbar * self.ybar], -1),
                      np.stack([XY - m * self.xbar * self.ybar, YY - m * self.ybar**2], -1)], -2)
        J[~self.has] = np.eye(2)
        self.J_inv = np.linalg.pinv(J, rcond=1e-12)
        # torsion: degree 2p + 2, r regularised as fenicsx (1e-9 × the largest extent)
        xt, wt = tet_rule(2 * p + 2)
        Xt = space.physical(xt)
        rx, ry = Xt[..., 0] - c[0], Xt[..., 1] - c[1]
        r = np.sqrt(rx * rx + ry * ry + (1e-9 * float(np.max(hi - lo))) ** 2)
        self.Nt = tet_basis(p, xt)[0]
        self.Wt = (rho * space.absdet)[:, None] * wt[None]
        self.ct, self.st = -ry / r, rx / r

    def _per_slice(self, cell_values: np.ndarray) -> np.ndarray:
        return np.bincount(self.slice_of, weights=cell_values, minlength=self.n_slices)

    def __call__(self, shape: np.ndarray) -> phys.ModeFractions:
        """shape: (n_dofs, 3) nodal values."""
        u = np.asarray(shape).reshape(-1, 3)
        flat = u.ravel()
        tot = float(flat @ (self.M @ flat))
        ax = float(u[:, 2] @ (self.Ms @ u[:, 2]))
        uc = u[self.space.cell_dofs]                                       # (m, nd, 3)
        ut = np.einsum("qa,cai->cqi", self.Nt, uc)
        u_theta = self.ct * ut[..., 0] + self.st * ut[..., 1]
        tor = float(np.sum(self.Wt * u_theta**2))
        uq = np.einsum("qa,cai->cqi", self.N, uc)
        Ux, Uy, Uz, Uzx, Uzy = (self._per_slice((self.Wq * q).sum(axis=1)) for q in
                                (uq[..., 0], uq[..., 1], uq[..., 2], uq[..., 2] * self.xr, uq[..., 2] * self.yr))
        has, m = self.has, self.slice_mass[self.has]
        mean_energy = float(np.sum((Ux[has] ** 2 + Uy[has] ** 2) / m))
        g = np.stack([Uzx - self.xbar * Uz, Uzy - self.ybar * Uz], -1)[has]
        tilt = float(np.einsum("si,sij,sj->", g, self.J_inv[has], g))
        lateral = tot - ax
        bending = mean_energy / lateral if lateral > 1e-12 * tot else 0.0
        clip = lambda v, hi=1.0: float(min(max(v, 0.0), hi))  # noqa: E731
        e_ax = clip(ax / tot)
        return phys.ModeFractions(e_ax, clip(tor / tot), clip(bending), clip(tilt / tot, e_ax))


class ModalProblem:
    """Space, per-cell properties, K, M (full, blocked) and the constrained dofs of a case."""

    def __init__(self, mesh: Any, case: CaseSpec, materials: Mapping[str, Material]):
        self.mesh, self.case = mesh, case
        self.space = V = Space(mesh.points, mesh.cells, case.effective_element_order)
        self.volumes = volume_groups(mesh)
        self.mats = {n: material_for(n, materials) for n in self.volumes}
        self.rho = cellwise(mesh, self.volumes, {n: m.density_kg_m3 for n, m in self.mats.items()})
        self.lam = cellwise(mesh, self.volumes, {n: m.lame_parameters()[0] for n, m in self.mats.items()})
        self.mu = cellwise(mesh, self.volumes, {n: m.lame_parameters()[1] for n, m in self.mats.items()})
        self.K = V.assemble(V.elasticity_local(self.lam, self.mu), block=3)
        self.M = V.assemble(vector_mass_local(V, self.rho), block=3)
        self.constrained = zero_dirichlet_dofs(mesh, case, V)
        self.n_dofs = 3 * V.n_dofs


def _restrict(A: sp.spmatrix, free: np.ndarray) -> sp.csc_matrix:
    return sp.csr_matrix(A)[free][:, free].tocsc()


def eigen_near(K: sp.spmatrix, M: sp.spmatrix, k: int, sigma: float, R: np.ndarray | None = None,
               what: str = "") -> tuple[np.ndarray, np.ndarray, int]:
    """(eigenvalues, eigenvectors, operator applications) of the k eigenpairs of K x = λ M x
    nearest sigma, ARPACK shift-and-invert, optionally deflating the M-orthonormal R.
    Small problems (k ≥ n − 1) are solved densely."""
    n = K.shape[0]
    if k >= n - 1:
        import scipy.linalg as sla

        lam, X = sla.eigh(K.toarray(), M.toarray())
        if R is not None and R.shape[1]:
            keep = np.abs(R.T @ (M @ X)).max(axis=0) < 1e-6
            lam, X = lam[keep], X[:, keep]
        pick = np.argsort(np.abs(lam - sigma))[:k]
        return lam[pick], X[:, pick], 0
    try:
        lu = spla.splu((K - sigma * M).tocsc())
    except RuntimeError as exc:
        raise ModalSolverError(f"the shift-and-invert factorisation failed{what} ({exc}): the target may "
                               "coincide with an eigenvalue, or the mesh/material is degenerate") from exc
    calls = [0]
    if R is not None and R.shape[1]:
        MR = M @ R

        def op(x):
            calls[0] += 1
            y = lu.solve(np.asarray(x, dtype=np.float64).ravel())
            return y - R @ (MR.T @ y)
    else:
        def op(x):
            calls[0] += 1
            return lu.solve(np.asarray(x, dtype=np.float64).ravel())
    OPinv = spla.LinearOperator((n, n), matvec=op, dtype=np.float64)
    v0 = np.random.default_rng(20240).uniform(-1.0, 1.0, n)   # generic, reproducible start
    if R is not None and R.shape[1]:
        v0 -= R @ (MR.T @ v0)
    try:
        lam, X = spla.eigsh(K, k=k, M=M, sigma=sigma, which="LM", mode="normal", OPinv=OPinv,
                            tol=EIGSH_TOL, v0=v0)
    except spla.ArpackNoConvergence as exc:
        raise ModalSolverError(f"ARPACK did not converge{what}: {len(exc.eigenvalues)} of {k} "
                               "eigenpairs; check the materials and boundary conditions") from exc
    return lam, X, calls[0]


def solve_modal(mesh: Any, case: CaseSpec, materials: Mapping[str, Material], *,
                on_progress: ProgressCallback | None = None, n_slices: int = DEFAULT_SLICES) -> ModalResult:
    """The solver.modes_wanted modes of `case` nearest the target frequency.

    mesh: MeshData; materials: volume group -> Material. Raises WeldSimError (bad groups,
    no target), ModalSolverError (factorisation or ARPACK failure).
    """
    target = case.target_frequency_Hz
    if target is None:
        raise WeldSimError("solver.target_frequency_Hz: a modal analysis needs a target frequency")
    prob = ModalProblem(mesh, case, materials)
    V, K, M = prob.space, prob.K, prob.M
    nev = case.solver.modes_wanted
    if on_progress is not None:
        on_progress(0, 0.0, 0.0, PHASE, f"shift-and-invert around {target:g} Hz ({prob.n_dofs} dofs)", 0.0)
    R = rigid_basis(V, prob.constrained, M)
    free = np.setdiff1d(np.arange(prob.n_dofs), prob.constrained)
    Kf, Mf = _restrict(K, free), _restrict(M, free)
    Rf = R[free]
    # a few eigenpairs beyond nev (as SLEPc converges more than nev): ARPACK may otherwise
    # settle on the k-th nearest mode's neighbour; the nev nearest are kept below
    k = min(nev + EXTRA_MODES, len(free) - 1 - Rf.shape[1])
    lam, Xf, its = eigen_near(Kf, Mf, k, (2 * np.pi * target) ** 2, Rf)
    g = sign_field(V)
    pairs, dropped = [], 0
    for i in range(len(lam)):
        f = float(np.sqrt(max(lam[i], 0.0)) / (2 * np.pi))
        if not np.isfinite(f) or f < RIGID_CUTOFF * target:
            dropped += 1
            continue
        phi = np.zeros(prob.n_dofs)
        phi[free] = Xf[:, i]
        Mphi = M @ phi
        phi /= np.sqrt(phi @ Mphi)
        if (M @ phi) @ g < 0:
            phi = -phi
        pairs.append((f, phi))
    if not pairs:
        raise ModalSolverError(f"no elastic eigenpair near {target:g} Hz: check the materials and "
                               "boundary conditions")
    pairs = sorted(sorted(pairs, key=lambda p: abs(p[0] - target))[:nev], key=lambda p: p[0])
    fractions = Fractions(V, prob.rho, M, n_slices)
    shapes = np.array([phi.reshape(-1, 3) for _, phi in pairs])
    modes = [phys.Mode(k, f, fractions(s)) for k, ((f, _), s) in enumerate(zip(pairs, shapes), start=1)]
    summary = phys.modal_summary(modes, target)
    if on_progress is not None:
        on_progress(int(its), 0.0, 100.0, PHASE, f"{len(modes)} modes found ({its} operator applications)", 0.0)
    return ModalResult(shapes, np.array([m.frequency_Hz for m in modes]), V, summary, R.shape[1],
                       dropped, len(lam), int(its), prob.n_dofs)
