"""Modal analysis on dolfinx 0.5 + SLEPc (collective functions, MPI).

    K φ = ω² M φ,   K = ∫ σ(φ):ε(v),   M = ∫ ρ φ·v,   f = ω / 2π   (Hz)

u is vector Lagrange of order case.effective_element_order (2 by default); ρ, λ, μ are
piecewise constant per volume group (DG0 from the cell tags), as in elasticity.py.

Boundary conditions: `fixed` groups and the given components of `displacement` groups are
constrained to ZERO (a modal analysis is homogeneous: prescribed values are ignored); K is
assembled with 1 and M with 0 on the constrained diagonal, so those dofs map to an
infinite eigenvalue that shift-and-invert never returns. Other BC types are ignored.

Rigid-body modes: the rigid motions (3 translations, 3 rotations about the mesh centre)
that the constraints leave free — all six for a free-free body, none for a clamped one —
span exact zero-frequency eigenvectors (K r = 0). They are M-orthonormalised and given to
SLEPc as the deflation space (EPSSetDeflationSpace), so the eigensolver works in their
M-orthogonal complement and never returns them; a target near the working frequency
does NOT skip them by itself. Any remaining mode below RIGID_CUTOFF × target is dropped
too (and counted in `ModalResult.rigid_dropped`).

Solver: SLEPc Krylov–Schur, GHEP, ST sinvert with KSP preonly + LU (MUMPS), target
ω_t² = (2π case.target_frequency_Hz)², Which.TARGET_MAGNITUDE, nev = solver.modes_wanted;
relative tolerance EPS_TOL. solver.petsc_options are NOT applied here (the inner solve
must stay a direct LU for shift-and-invert). The modes_wanted converged modes nearest
the target are kept, renumbered 1..n in ascending frequency, and mass-normalised
(φᵀ M φ = 1, units m·kg^-½); the sign makes ∫ρ φ·g > 0 for a fixed generic field g, so
the shapes are reproducible between runs and rank counts (degenerate pairs excepted).

Classification integrals (physics/modal.py defines the fractions and the classes), by
quadrature over the cells: axis +z through the mass centroid; e_ax and e_tor as
assembled scalars; the slice means and slice tilts from per-cell integrals (DG0 test
functions: ∫ρ u_x, ∫ρ u_y, ∫ρ u_z, ∫ρ u_z x, ∫ρ u_z y and the slice's mass moments)
binned by the cell midpoint's z into `n_slices` (32) equal slices.

Public API::

    solve_modal(fmesh, comm, case, materials, *, on_progress=None) -> ModalResult
    ModalResult, ModalSolverError
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ...case import CaseSpec, DisplacementBC, FixedBC
from ...errors import SolverError, WeldSimError
from ...materials import Material
from ...physics import modal as phys
from . import compat
from .elasticity import _dirichlet_entities
from .thermal import _material_for

#: on_progress(step, t_s, percent, phase, message, residual), as in thermal.py
ProgressCallback = Callable[[int, float, float, str, str, float], None]
EPS_TOL = 1e-10          # SLEPc relative residual tolerance
EPS_MAX_IT = 500
RIGID_CUTOFF = 1e-3      # modes below this × target (Hz) are rigid-body leftovers
DEFAULT_SLICES = 32


class ModalSolverError(SolverError):
    """SLEPc found no eigenpair, or the shift-and-invert factorisation failed."""


@dataclass
class ModalResult:
    """What solve_modal returns (identical scalars on every rank). Hz, m·kg^-½.

    shapes:        mass-normalised mode shapes (vector P-order Functions), ascending
    frequencies_Hz: their frequencies, ascending (mode k = shapes[k - 1])
    summary:       physics.modal.ModalSummary (classes, working mode, separation, metrics)
    n_rigid_deflated: rigid motions removed by deflation (6 free-free, 0 clamped)
    rigid_dropped: converged modes below RIGID_CUTOFF × target that were discarded
    """

    shapes: list
    frequencies_Hz: np.ndarray
    summary: phys.ModalSummary
    n_rigid_deflated: int
    rigid_dropped: int
    n_converged: int
    iterations: int
    n_dofs: int

    @property
    def modes(self) -> tuple[phys.Mode, ...]:
        return self.summary.modes

    def shapes_p1(self) -> list:
        """The shapes interpolated to vector P1 (XDMF output), same order and names."""
        from dolfinx import fem

        if not self.shapes:
            return []
        V = self.shapes[0].function_space
        if V.ufl_element().degree() == 1:
            return list(self.shapes)
        V1 = fem.VectorFunctionSpace(V.mesh, ("Lagrange", 1))
        out = []
        for u in self.shapes:
            u1 = fem.Function(V1, name=u.name)
            compat.interpolate_function(u1, u)
            out.append(u1)
        return out


def _zero_dirichlet(fmesh: Any, case: CaseSpec, V: Any) -> tuple[list, np.ndarray]:
    """Homogeneous BCs of the fixed/displacement groups; (bcs, constrained local dofs)."""
    from dolfinx import fem
    from petsc4py import PETSc

    bcs, constrained = [], [np.zeros(0, dtype=np.int64)]
    for i, bc in enumerate(case.boundary_conditions):
        where = f"boundary_conditions[{i}]"
        if isinstance(bc, FixedBC):
            dim, ents = _dirichlet_entities(fmesh, bc.boundary, f"{where}.boundary")
            blocks = fem.locate_dofs_topological(V, dim, ents)
            bcs.append(fem.dirichletbc(np.zeros(3, dtype=PETSc.ScalarType), blocks, V))
            constrained += [3 * np.asarray(blocks, dtype=np.int64) + c for c in range(3)]
        elif isinstance(bc, DisplacementBC):
            dim, ents = _dirichlet_entities(fmesh, bc.boundary, f"{where}.boundary")
            for c, raw in enumerate(bc.value):
                if raw is None:
                    continue
                Vc, _ = V.sub(c).collapse()
                dofs = fem.locate_dofs_topological((V.sub(c), Vc), dim, ents)
                bcs.append(fem.dirichletbc(fem.Function(Vc), dofs, V.sub(c)))
                constrained.append(np.asarray(dofs[0], dtype=np.int64))
    return bcs, np.unique(np.concatenate(constrained))


def _properties(fmesh: Any, comm: Any, materials: Mapping[str, Material]) -> tuple[Any, Any, Any]:
    """DG0 (ρ, λ, μ) from the volume groups; every cell must carry a material."""
    from dolfinx import fem

    volumes = {n: tag for n, (d, tag) in fmesh.groups.items() if d == 3}
    mats = {n: _material_for(n, materials) for n in volumes}
    Q = compat.dg0_space(fmesh.mesh)
    out = []
    for name, prop in (("density", lambda m: m.density_kg_m3), ("lambda", lambda m: m.lame_parameters()[0]),
                       ("mu", lambda m: m.lame_parameters()[1])):
        f = fem.Function(Q, name=name)
        unset = compat.set_cellwise(f, fmesh.cell_tags, {volumes[n]: prop(m) for n, m in mats.items()})
        out.append(f)
    if comm.allreduce(int(len(unset))):
        raise WeldSimError("cells without a volume tag: every cell needs a material")
    return tuple(out)


def _bounds(comm: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from mpi4py import MPI

    lo, hi = np.empty(3), np.empty(3)
    comm.Allreduce(x.min(axis=0) if len(x) else np.full(3, np.inf), lo, op=MPI.MIN)
    comm.Allreduce(x.max(axis=0) if len(x) else np.full(3, -np.inf), hi, op=MPI.MAX)
    return lo, hi


def _free_rigid_modes(V: Any, constrained: np.ndarray, M: Any, comm: Any) -> list:
    """M-orthonormal PETSc vectors spanning the rigid motions the constraints leave free."""
    from mpi4py import MPI

    n_owned = V.dofmap.index_map.size_local
    lo, hi = _bounds(comm, V.mesh.geometry.x)
    centre, size = 0.5 * (lo + hi), max(float(np.max(hi - lo)), 1e-300)
    p = (V.tabulate_dof_coordinates()[:n_owned] - centre) / size
    basis = np.zeros((6, n_owned, 3))
    for k in range(3):
        basis[k, :, k] = 1.0
        basis[3 + k] = np.cross(np.eye(3)[k], p)
    basis = basis.reshape(6, -1)
    owned_c = constrained[constrained < 3 * n_owned]
    G = np.empty((6, 6))
    comm.Allreduce(np.ascontiguousarray(basis[:, owned_c] @ basis[:, owned_c].T), G, op=MPI.SUM)
    w, Q = np.linalg.eigh(G)
    scale = max(float(w[-1]), 1.0)
    free = Q[:, w <= 1e-10 * scale]          # combinations vanishing on every constrained dof
    if free.shape[1] == 0:
        return []
    combos = free.T @ basis
    combos[:, owned_c] = 0.0
    vecs = []
    for row in combos:
        v = M.createVecRight()
        v.array[:] = row
        vecs.append(v)
    # M-orthonormalise: Gram G_ij = r_iᵀ M r_j = L Lᵀ, r ← r L^-T
    Mv = [M.createVecLeft() for _ in vecs]
    for v, mv in zip(vecs, Mv):
        M.mult(v, mv)
    gram = np.array([[vi.dot(mj) for mj in Mv] for vi in vecs])
    T = np.linalg.inv(np.linalg.cholesky(gram)).T
    out = []
    for j in range(len(vecs)):
        v = M.createVecRight()
        v.set(0.0)
        for i in range(len(vecs)):
            v.axpy(T[i, j], vecs[i])
        out.append(v)
    for v in (*vecs, *Mv):
        v.destroy()
    return out


class _Fractions:
    """Compiled forms for the energy fractions of a mode (physics.modal.ModeFractions)."""

    def __init__(self, V: Any, rho: Any, comm: Any, n_slices: int):
        import ufl
        from dolfinx import fem

        mesh = V.mesh
        self.comm, self.u = comm, fem.Function(V)
        self.Q = compat.dg0_space(mesh)
        x = ufl.SpatialCoordinate(mesh)
        mass = comm.allreduce(fem.assemble_scalar(fem.form(rho * ufl.dx(domain=mesh))))
        c = [comm.allreduce(fem.assemble_scalar(fem.form(rho * x[i] * ufl.dx))) / mass for i in range(2)]
        lo, hi = _bounds(comm, mesh.geometry.x)
        self.centroid_xy = np.array(c)
        u = self.u
        dx, dxq = ufl.dx(domain=mesh), ufl.dx(domain=mesh, metadata={"quadrature_degree": 2 * V.ufl_element().degree() + 2})
        # centroid and regulariser as Constants, not floats: a float changing in its last bit
        # (another partition, another mesh) would give the form a new signature and a JIT
        # compilation on every run
        from petsc4py import PETSc

        cx, cy = (fem.Constant(mesh, PETSc.ScalarType(v)) for v in c)
        eps2 = fem.Constant(mesh, PETSc.ScalarType((1e-9 * float(np.max(hi - lo))) ** 2))
        rx, ry = x[0] - cx, x[1] - cy
        r = ufl.sqrt(rx * rx + ry * ry + eps2)
        u_theta = (-ry * u[0] + rx * u[1]) / r
        self.total = fem.form(rho * ufl.inner(u, u) * dx)
        self.axial = fem.form(rho * u[2] * u[2] * dx)
        self.torsional = fem.form(rho * u_theta * u_theta * dxq)
        w = ufl.TestFunction(self.Q)
        xr, yr = x[0] - cx, x[1] - cy
        # per cell: ∫ρ u_x, ∫ρ u_y (slice-mean transverse motion); ∫ρ u_z, ∫ρ u_z x, ∫ρ u_z y (tilt)
        self.cell_forms = [fem.form(rho * q * w * dx) for q in (u[0], u[1], u[2], u[2] * xr, u[2] * yr)]
        n_cells = self.Q.dofmap.index_map.size_local
        z = self.Q.tabulate_dof_coordinates()[:n_cells, 2]
        dz = max(float(hi[2] - lo[2]), 1e-300) / n_slices
        self.slice_of = np.clip(((z - lo[2]) / dz).astype(np.int64), 0, n_slices - 1)
        self.n_slices, self.n_cells = n_slices, n_cells
        m, X, Y, XX, XY, YY = (self._per_slice(self._cellwise(fem.form(rho * q * w * dx)))
                               for q in (1.0, xr, yr, xr * xr, xr * yr, yr * yr))
        self.slice_mass = m
        self.has = m > 0
        mm = np.where(self.has, m, 1.0)
        self.xbar, self.ybar = X / mm, Y / mm
        J = np.stack([np.stack([XX - m * self.xbar**2, XY - m * self.xbar * self.ybar], -1),
                      np.stack([XY - m * self.xbar * self.ybar, YY - m * self.ybar**2], -1)], -2)
        J[~self.has] = np.eye(2)
        self.J_inv = np.linalg.pinv(J, rcond=1e-12)

    def _cellwise(self, form: Any) -> np.ndarray:
        from dolfinx.fem import petsc as fpetsc

        vec = fpetsc.assemble_vector(form)
        out = vec.array_r[:self.n_cells].copy()
        vec.destroy()
        return out

    def _per_slice(self, cell_values: np.ndarray) -> np.ndarray:
        from mpi4py import MPI

        local = np.bincount(self.slice_of, weights=cell_values, minlength=self.n_slices)
        out = np.empty_like(local)
        self.comm.Allreduce(local, out, op=MPI.SUM)
        return out

    def __call__(self, array: np.ndarray) -> phys.ModeFractions:
        from dolfinx import fem

        self.u.x.array[:] = array
        self.u.x.scatter_forward()
        tot, ax, tor = (self.comm.allreduce(fem.assemble_scalar(f)) for f in (self.total, self.axial, self.torsional))
        Ux, Uy, Uz, Uzx, Uzy = (self._per_slice(self._cellwise(f)) for f in self.cell_forms)
        has, m = self.has, self.slice_mass[self.has]
        mean_energy = float(np.sum((Ux[has] ** 2 + Uy[has] ** 2) / m))
        # tilt: least-squares u_z ≈ a + b (x − x̄) + c (y − ȳ) per slice; energy = gᵀ J⁻¹ g
        g = np.stack([Uzx - self.xbar * Uz, Uzy - self.ybar * Uz], -1)[has]
        tilt = float(np.einsum("si,sij,sj->", g, self.J_inv[has], g))
        lateral = tot - ax
        bending = mean_energy / lateral if lateral > 1e-12 * tot else 0.0
        clip = lambda v, hi=1.0: float(min(max(v, 0.0), hi))  # noqa: E731
        e_ax = clip(ax / tot)
        return phys.ModeFractions(e_ax, clip(tor / tot), clip(bending), clip(tilt / tot, e_ax))


def solve_modal(fmesh: Any, comm: Any, case: CaseSpec, materials: Mapping[str, Material], *,
                on_progress: ProgressCallback | None = None, n_slices: int = DEFAULT_SLICES) -> ModalResult:
    """Collective: the solver.modes_wanted modes of `case` nearest the target frequency.

    fmesh: a `mesh_io.FenicsxMesh`; materials: volume group -> Material. Raises
    WeldSimError (bad groups, no target), ModalSolverError (nothing converged).
    """
    import ufl
    from dolfinx import fem
    from dolfinx.fem import petsc as fpetsc
    from petsc4py import PETSc
    from slepc4py import SLEPc

    target = case.target_frequency_Hz
    if target is None:
        raise WeldSimError("solver.target_frequency_Hz: a modal analysis needs a target frequency")
    mesh = fmesh.mesh
    order = case.effective_element_order
    V = fem.VectorFunctionSpace(mesh, ("Lagrange", order))
    bcs, constrained = _zero_dirichlet(fmesh, case, V)
    rho, lam, mu = _properties(fmesh, comm, materials)
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    eps_ = lambda w: ufl.sym(ufl.grad(w))  # noqa: E731
    a = ufl.inner(2 * mu * eps_(u) + lam * ufl.tr(eps_(u)) * ufl.Identity(3), eps_(v)) * ufl.dx
    m = rho * ufl.inner(u, v) * ufl.dx
    K = fpetsc.assemble_matrix(fem.form(a), bcs=bcs, diagonal=1.0)
    K.assemble()
    M = fpetsc.assemble_matrix(fem.form(m), bcs=bcs, diagonal=0.0)
    M.assemble()
    rigid = _free_rigid_modes(V, constrained, M, comm)
    nev = case.solver.modes_wanted
    phase = "modal"

    eps = SLEPc.EPS().create(comm)
    eps.setOperators(K, M)
    eps.setProblemType(SLEPc.EPS.ProblemType.GHEP)
    eps.setType(SLEPc.EPS.Type.KRYLOVSCHUR)
    eps.setDimensions(nev=nev)
    eps.setTarget((2 * np.pi * target) ** 2)
    eps.setWhichEigenpairs(SLEPc.EPS.Which.TARGET_MAGNITUDE)
    eps.setTolerances(tol=EPS_TOL, max_it=EPS_MAX_IT)
    st = eps.getST()
    st.setType(SLEPc.ST.Type.SINVERT)
    ksp = st.getKSP()
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType("lu")
    pc.setFactorSolverType("mumps")
    if rigid:
        eps.setDeflationSpace(rigid)
    if on_progress is not None:
        def monitor(_eps, its, nconv, eig, err):
            residual = float(err[nconv]) if nconv < len(err) else 0.0
            on_progress(int(its), 0.0, min(99.0, 100.0 * nconv / nev), phase,
                        f"Krylov–Schur iteration {its}: {nconv}/{nev} modes converged", residual)
        eps.setMonitor(monitor)
    try:
        eps.solve()
    except PETSc.Error as exc:
        raise ModalSolverError(
            f"SLEPc shift-and-invert failed (PETSc error {exc.ierr}): the target "
            f"{target:g} Hz may coincide with an eigenvalue, or the mesh/material is degenerate") from exc
    n_conv, its = eps.getConverged(), eps.getIterationNumber()
    if n_conv == 0:
        raise ModalSolverError(f"SLEPc converged no eigenpair near {target:g} Hz in {its} iterations: "
                               "check the materials and boundary conditions")

    vr = K.createVecRight()
    Mv = K.createVecLeft()
    g = M.createVecRight()
    n_owned = V.dofmap.index_map.size_local
    xyz = V.tabulate_dof_coordinates()[:n_owned]
    g.array[:] = np.column_stack([1.0 + 0.31 * xyz[:, 1], 0.7 + 0.53 * xyz[:, 2], 0.4 + 0.17 * xyz[:, 0]]
                                 ).ravel() * np.tile([1.0, 1.1, 1.3], n_owned)
    pairs, dropped = [], 0
    for i in range(n_conv):
        lam_i = eps.getEigenpair(i, vr).real
        f = float(np.sqrt(max(lam_i, 0.0)) / (2 * np.pi))
        if not np.isfinite(f) or f < RIGID_CUTOFF * target:
            dropped += 1
            continue
        M.mult(vr, Mv)
        vr.scale(1.0 / np.sqrt(vr.dot(Mv)))
        M.mult(vr, Mv)
        if Mv.dot(g) < 0:
            vr.scale(-1.0)
        pairs.append((f, vr.array_r.copy()))
    pairs = sorted(sorted(pairs, key=lambda p: abs(p[0] - target))[:nev], key=lambda p: p[0])
    shapes = []
    fractions = _Fractions(V, rho, comm, n_slices)
    modes = []
    for k, (f, owned) in enumerate(pairs, start=1):
        phi = fem.Function(V, name="displacement")
        phi.x.array[:len(owned)] = owned
        phi.x.scatter_forward()
        shapes.append(phi)
        modes.append(phys.Mode(k, f, fractions(phi.x.array)))
    n_dofs = V.dofmap.index_map.size_global * 3
    for obj in (vr, Mv, g, *rigid, eps, K, M):
        obj.destroy()
    summary = phys.modal_summary(modes, target)
    if on_progress is not None:
        on_progress(int(its), 0.0, 100.0, phase, f"{len(modes)} modes found ({its} iterations)", 0.0)
    return ModalResult(shapes, np.array([mo.frequency_Hz for mo in modes]), summary, len(rigid),
                       dropped, int(n_conv), int(its), int(n_dofs))
