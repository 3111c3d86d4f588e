"""Static linear elasticity with thermal strain on dolfinx 0.5 (collective functions, MPI).

    −∇·σ = f,   σ = 2μ ε(u) + λ tr(ε(u)) I − (3λ + 2μ) α (T − T_ref) I,   ε = sym ∇u

λ, μ (from E, ν) and α are piecewise constant per volume group (DG0 from the cell tags);
u is vector Lagrange of order case.effective_element_order (2 by default).

Boundary conditions (case.boundary_conditions, structural types; others are ignored):

* fixed          u = 0 (all components) on the group
* displacement   the given components (None = free) on the group: numbers or expressions
                 of x, y, z (t = 0). A symmetry plane or roller is one line, e.g.
                 ``{"type": "displacement", "boundary": "x0", "value": [0, None, None]}``.
                 Dofs are located topologically on the group's own dimension
                 (``fmesh.groups[name][0]``: 2 surfaces, 1 edges, 0 points — edge and point
                 groups need ``fmesh.entity_tags(dim)`` or ``fmesh.edge_tags/point_tags``)
* pressure       t = −p n on a surface (n the outward normal: positive p pushes in)
* traction       t = (tx, ty, tz) Pa on a surface
Loads: body_force (N/m³) per volume or everywhere; temperature_field (K) per volume or
everywhere, giving the thermal strain α (T − T_ref), T_ref = case.thermal.T_ref_K.
A `temperature` Function (any Lagrange order, e.g. from solve_thermal) takes precedence:
the temperature_field loads are used only when no Function is passed. Cells outside every
temperature_field volume stay at T_ref. T lives in a DG space of degree max(order,
temperature degree), so a P1/P2 temperature is carried exactly.

Before anything is assembled the Dirichlet conditions are checked against the six rigid
body modes (`check_constrained`): NotConstrainedError (same message on every rank) when a
rigid motion leaves every constrained dof at zero.

Solver: CG + GAMG with the rigid-body near-nullspace (built from the owned dof
coordinates, block size 3); rtol/atol/max_iterations and the allow-listed
solver.petsc_options (prefix weldsim_elasticity_) from case.solver;
ElasticitySolverError when CG does not converge.

Output (ElasticityResult): displacement (order p), displacement_p1 (vector P1 for XDMF),
stress (tensor DG of degree p−1: exact for the strain of a P-p displacement), von_mises_dg0
(evaluated at each cell midpoint = the cell average of the strain for P2 on affine
tetrahedra), von_mises_p1 (lumped L2 projection, nodal output), metrics:
max_von_mises_Pa = max of the cellwise (midpoint) values — not vertex extrapolations,
which blow up at re-entrant corners; von_mises_over_yield per volume (warning above 1);
max_displacement_m = max |u| over the dof nodes.

Public API (stable; LE10 and the coupled solver build on it)::

    solve_elasticity(fmesh, comm, case, materials_by_volume, *, temperature=None,
                     on_progress=None) -> ElasticityResult
    ElasticityProblem(fmesh, comm, case, materials_by_volume, temperature_degree=None)
        .solve(temperature=None, on_progress=None) -> ElasticityResult   (A assembled once)
    check_constrained(V, constrained_dofs, comm)   raises NotConstrainedError
    NotConstrainedError, ElasticitySolverError, NOT_CONSTRAINED_MESSAGE
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ...case import BodyForceLoad, CaseSpec, DisplacementBC, FixedBC, PressureBC, TemperatureFieldLoad, TractionBC
from ...errors import SolverError, WeldSimError
from ...expressions import Expression, as_value
from ...materials import Material
from ...physics import structural as phys
from . import compat
from .petsc_setup import configure_ksp
from .thermal import _group_tag, _material_for

#: on_progress(step, t_s, percent, phase, message, residual), as in thermal.py
ProgressCallback = Callable[[int, float, float, str, str, float], None]
NOT_CONSTRAINED_MESSAGE = ("the structure is not constrained: add a fixed boundary or use a "
                           "free-free modal analysis")


class NotConstrainedError(WeldSimError):
    """The Dirichlet conditions leave a rigid-body motion free (K is singular)."""

    def __init__(self, message: str = NOT_CONSTRAINED_MESSAGE):
        super().__init__(message)


class ElasticitySolverError(SolverError):
    """The linear solver did not converge."""


@dataclass
class ElasticityResult:
    """What a static solve returns (identical scalars on every rank). Pa, m, K."""

    displacement: Any              # vector P-order Function, m
    displacement_p1: Any           # vector P1 (XDMF output); the same object when order 1
    stress: Any                    # tensor DG(order−1) Function, Pa
    von_mises_dg0: Any             # cellwise (midpoint) von Mises, Pa
    von_mises_p1: Any              # lumped L2 projection on P1, Pa
    temperature: Any               # the DG temperature used (K), None without thermal strain
    max_von_mises_by_volume_Pa: dict[str, float]   # peak cellwise von Mises per volume
    yield_by_volume_Pa: dict[str, float]
    max_displacement_m: float
    metrics: phys.StructuralMetrics
    ksp_iterations: int

    def stress_at(self, points: np.ndarray, comm: Any) -> np.ndarray:
        """Collective: (n, 6) stress components (xx, yy, zz, xy, yz, xz) at (n, 3) points,
        Pa; at a point shared by several cells the mean of their values (independent of
        the partition), nan outside the mesh."""
        values = compat.evaluate_vector_at_points(self.stress, points, comm, average=True)
        return phys.tensor_to_voigt(values.reshape(-1, 3, 3))


def entity_tags(fmesh: Any, dim: int) -> Any:
    """The MeshTags of dimension dim (3 cells, 2 facets, 1 edges, 0 points) or None."""
    lookup = getattr(fmesh, "entity_tags", None)
    if callable(lookup):
        return lookup(dim)
    names = {3: ("cell_tags",), 2: ("facet_tags",), 1: ("edge_tags",), 0: ("point_tags", "vertex_tags")}
    return next((t for n in names.get(dim, ()) if (t := getattr(fmesh, n, None)) is not None), None)


def _collective(comm: Any, fn: Callable[[], Any]) -> Any:
    """Run fn on every rank; a WeldSimError on any rank is raised on all (no hang)."""
    try:
        out, err = fn(), None
    except WeldSimError as exc:
        out, err = None, f"{exc}"
    errors = [e for e in comm.allgather(err) if e is not None]
    if errors:
        raise WeldSimError(errors[0])
    return out


def _interpolate(comm: Any, f: Any, values: list, cells: np.ndarray | None = None) -> None:
    """f ← (expression or number per component) at t = 0, collectively checked."""
    def fn(x):
        out = [np.full(x.shape[1], v) if not isinstance(v, Expression)
               else v.evaluate(x[0], x[1], x[2], 0.0) for v in values]
        return out[0] if len(out) == 1 else np.vstack(out)
    _collective(comm, lambda: f.interpolate(fn) if cells is None else f.interpolate(fn, cells))
    f.x.scatter_forward()


def _dirichlet_entities(fmesh: Any, name: str, where: str) -> tuple[int, np.ndarray]:
    if name not in fmesh.groups or fmesh.groups[name][0] > 2:
        known = sorted(n for n, (d, _) in fmesh.groups.items() if d <= 2)
        raise WeldSimError(f"{where}: no surface, edge or point group {name!r} in the mesh "
                           f"(known: {', '.join(known)})")
    dim, tag = fmesh.groups[name]
    tags = entity_tags(fmesh, dim)
    if tags is None:
        raise WeldSimError(f"{where}: the mesh carries no dimension-{dim} tags for group {name!r}")
    fmesh.mesh.topology.create_connectivity(dim, fmesh.mesh.topology.dim)
    return dim, compat.tagged_entities(tags, tag)


def check_constrained(V: Any, constrained: np.ndarray, comm: Any) -> None:
    """Collective: raise NotConstrainedError unless the constrained dofs (local unrolled
    indices of the vector space V, owned or ghost) kill all six rigid-body modes.

    G_kl = Σ_constrained r_k·r_l over the owned constrained dofs (r_k the translations and
    the rotations about the mesh centre, scaled by its size) is summed over ranks; a rigid
    motion Σ a_k r_k vanishes on every constrained dof iff G a = 0, so rank(G) < 6 means
    the structure can move freely.
    """
    from mpi4py import MPI

    x = V.mesh.geometry.x
    lo, hi = np.empty(3), np.empty(3)
    comm.Allreduce(x.min(axis=0) if len(x) else np.full(3, np.inf), lo, op=MPI.MIN)
    comm.Allreduce(x.max(axis=0) if len(x) else np.full(3, -np.inf), hi, op=MPI.MAX)
    centre, size = 0.5 * (lo + hi), max(float(np.max(hi - lo)), 1e-300)
    n_owned = V.dofmap.index_map.size_local
    dofs = np.unique(np.asarray(constrained, dtype=np.int64))
    dofs = dofs[dofs // 3 < n_owned]
    p = (V.tabulate_dof_coordinates()[dofs // 3] - centre) / size
    comp = dofs % 3
    rows = np.zeros((len(dofs), 6))
    rows[np.arange(len(dofs)), comp] = 1.0                  # translations e_k
    for k in range(3):                                      # rotations e_k × p
        rot = np.cross(np.eye(3)[k], p) if len(p) else np.zeros((0, 3))
        rows[:, 3 + k] = rot[np.arange(len(dofs)), comp]
    G = np.empty((6, 6))
    comm.Allreduce(np.ascontiguousarray(rows.T @ rows), G, op=MPI.SUM)
    eig = np.linalg.eigvalsh(G)
    if not eig[-1] > 0 or eig[0] <= 1e-10 * eig[-1]:
        raise NotConstrainedError()


def solve_elasticity(fmesh: Any, comm: Any, case: CaseSpec, materials_by_volume: Mapping[str, Material],
                     *, temperature: Any = None, on_progress: ProgressCallback | None = None
                     ) -> ElasticityResult:
    """Collective: static linear elasticity of `case` on `fmesh` (a `mesh_io.FenicsxMesh`).

    temperature: a dolfinx Function in K (any Lagrange order) for the thermal strain, or
    None (then the case's temperature_field loads, if any). Raises WeldSimError
    subclasses naming the field on bad input, NotConstrainedError, ElasticitySolverError.
    """
    degree = None if temperature is None else temperature.function_space.ufl_element().degree()
    problem = ElasticityProblem(fmesh, comm, case, materials_by_volume, temperature_degree=degree)
    try:
        return problem.solve(temperature, on_progress)
    finally:
        problem.destroy()


class ElasticityProblem:
    """Set-up (spaces, BCs, constraint check, K and its preconditioner) done once; `solve`
    may then be called for many temperature fields (the coupled transient run)."""

    def __init__(self, fmesh: Any, comm: Any, case: CaseSpec, materials_by_volume: Mapping[str, Material],
                 *, temperature_degree: int | None = None):
        import ufl
        from dolfinx import fem
        from petsc4py import PETSc

        self.fmesh, self.comm, self.case = fmesh, comm, case
        mesh, groups = fmesh.mesh, fmesh.groups
        self.order = order = case.effective_element_order
        self.V = V = fem.VectorFunctionSpace(mesh, ("Lagrange", order))
        bcs, constrained = self._dirichlet(V)
        check_constrained(V, constrained, comm)
        self.bcs = bcs
        lam, mu, alpha, self.volumes, self.yields = self._properties(materials_by_volume)
        self.T = fem.Function(fem.FunctionSpace(mesh, ("DG", max(order, temperature_degree or 1))),
                              name="temperature")
        self.T.x.array[:] = case.thermal.T_ref_K
        self.thermal_loads = self._temperature_loads()
        self._T_loads = self.T.x.array.copy()
        T_ref = fem.Constant(mesh, PETSc.ScalarType(case.thermal.T_ref_K))

        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        dx = ufl.Measure("dx", domain=mesh, subdomain_data=fmesh.cell_tags)
        ds = ufl.Measure("ds", domain=mesh, subdomain_data=fmesh.facet_tags)
        I = ufl.Identity(3)
        eps = lambda w: ufl.sym(ufl.grad(w))  # noqa: E731
        self.thermal_stress = (3 * lam + 2 * mu) * alpha * (self.T - T_ref)
        self.sigma = lambda w: 2 * mu * eps(w) + lam * ufl.tr(eps(w)) * I - self.thermal_stress * I
        a = ufl.inner(2 * mu * eps(u) + lam * ufl.tr(eps(u)) * I, eps(v)) * dx
        L = self.thermal_stress * ufl.div(v) * dx
        n = ufl.FacetNormal(mesh)
        scalar = compat.lagrange_space(mesh, order)
        for i, bc in enumerate(case.boundary_conditions):
            where = f"boundary_conditions[{i}]"
            if isinstance(bc, PressureBC):
                p = self._value([bc.value], f"{where}.value", scalar)
                L += -p * ufl.dot(n, v) * ds(_group_tag(groups, bc.boundary, 2, f"{where}.boundary"))
            elif isinstance(bc, TractionBC):
                t = self._value(list(bc.value), f"{where}.value", V)
                L += ufl.dot(t, v) * ds(_group_tag(groups, bc.boundary, 2, f"{where}.boundary"))
        for i, load in enumerate(case.loads):
            if isinstance(load, BodyForceLoad):
                where = f"loads[{i}]"
                f = self._value(list(load.value), f"{where}.value", V)
                measure = dx if load.volume is None else dx(_group_tag(groups, load.volume, 3, f"{where}.volume"))
                L += ufl.dot(f, v) * measure
        self.a_form, self.L_form = fem.form(a), fem.form(L)
        self._setup_solver(PETSc)

    # --- set-up -----------------------------------------------------------------------
    def _dirichlet(self, V: Any) -> tuple[list, np.ndarray]:
        from dolfinx import fem
        from petsc4py import PETSc

        bcs, constrained = [], [np.zeros(0, dtype=np.int64)]
        for i, bc in enumerate(self.case.boundary_conditions):
            where = f"boundary_conditions[{i}]"
            if isinstance(bc, FixedBC):
                dim, ents = _dirichlet_entities(self.fmesh, bc.boundary, f"{where}.boundary")
                blocks = fem.locate_dofs_topological(V, dim, ents)
                bcs.append(fem.dirichletbc(np.zeros(3, dtype=PETSc.ScalarType), blocks, V))
                constrained += [3 * np.asarray(blocks, dtype=np.int64) + c for c in range(3)]
            elif isinstance(bc, DisplacementBC):
                dim, ents = _dirichlet_entities(self.fmesh, bc.boundary, f"{where}.boundary")
                for c, raw in enumerate(bc.value):
                    if raw is None:
                        continue
                    Vc, _ = V.sub(c).collapse()
                    g = fem.Function(Vc)
                    _interpolate(self.comm, g, [as_value(raw, f"{where}.value[{c}]")])
                    dofs = fem.locate_dofs_topological((V.sub(c), Vc), dim, ents)
                    bcs.append(fem.dirichletbc(g, dofs, V.sub(c)))
                    constrained.append(np.asarray(dofs[0], dtype=np.int64))
        return bcs, np.concatenate(constrained)

    def _properties(self, materials: Mapping[str, Material]) -> tuple:
        from dolfinx import fem

        volumes = {n: tag for n, (d, tag) in self.fmesh.groups.items() if d == 3}
        mats = {n: _material_for(n, materials) for n in volumes}
        Q = compat.dg0_space(self.fmesh.mesh)
        out = []
        for name, prop in (("lambda", lambda m: m.lame_parameters()[0]), ("mu", lambda m: m.lame_parameters()[1]),
                           ("alpha", lambda m: m.expansion_1_K)):
            f = fem.Function(Q, name=name)
            unset = compat.set_cellwise(f, self.fmesh.cell_tags, {volumes[n]: prop(m) for n, m in mats.items()})
            out.append(f)
        n_unset = self.comm.allreduce(int(len(unset)))
        if n_unset:
            raise WeldSimError(f"{n_unset} cells carry no volume tag: every cell needs a material")
        return (*out, volumes, {n: m.yield_strength_Pa for n, m in mats.items()})

    def _temperature_loads(self) -> bool:
        """T ← the temperature_field loads (in case order; later loads win where they overlap)."""
        found = False
        for i, load in enumerate(self.case.loads):
            if isinstance(load, TemperatureFieldLoad):
                where = f"loads[{i}]"
                cells = None if load.volume is None else compat.tagged_entities(
                    self.fmesh.cell_tags, _group_tag(self.fmesh.groups, load.volume, 3, f"{where}.volume"))
                _interpolate(self.comm, self.T, [as_value(load.value, f"{where}.value")], cells)
                found = True
        return found

    def _value(self, raws: list, where: str, V: Any) -> Any:
        """A Constant for numbers, else a Function on V (scalar or vector) at t = 0."""
        from dolfinx import fem
        from petsc4py import PETSc

        values = [as_value(r, f"{where}[{j}]" if len(raws) > 1 else where) for j, r in enumerate(raws)]
        values = [float(v.evaluate(0, 0, 0)) if isinstance(v, Expression) and v.is_constant else v
                  for v in values]
        if not any(isinstance(v, Expression) for v in values):
            arr = np.array(values, dtype=PETSc.ScalarType)
            return fem.Constant(self.fmesh.mesh, arr[0] if len(values) == 1 else arr)
        f = fem.Function(V)
        _interpolate(self.comm, f, values)
        return f

    def _setup_solver(self, PETSc: Any) -> None:
        from dolfinx.fem import petsc as fpetsc

        self.A = fpetsc.assemble_matrix(self.a_form, bcs=self.bcs)
        self.A.assemble()
        n_owned = self.V.dofmap.index_map.size_local
        coords = np.ascontiguousarray(self.V.tabulate_dof_coordinates()[:n_owned].ravel())
        xvec = PETSc.Vec().createWithArray(coords, size=(3 * n_owned, PETSc.DECIDE), bsize=3, comm=self.comm)
        self.nullspace = PETSc.NullSpace().createRigidBody(xvec)
        xvec.destroy()
        self.A.setNearNullSpace(self.nullspace)
        self.ksp = ksp = PETSc.KSP().create(self.comm)
        ksp.setOperators(self.A)
        ksp.setType("cg")
        ksp.getPC().setType("gamg")
        s = self.case.solver
        ksp.setTolerances(rtol=s.rtol, atol=s.atol, max_it=s.max_iterations)
        configure_ksp(ksp, s.petsc_options, "weldsim_elasticity_")

    # --- solve ------------------------------------------------------------------------
    def solve(self, temperature: Any = None, on_progress: ProgressCallback | None = None) -> ElasticityResult:
        """Collective: u for the given temperature Function (K), else the temperature_field
        loads (else no thermal strain)."""
        from dolfinx import fem
        from dolfinx.fem import petsc as fpetsc
        from petsc4py import PETSc

        if temperature is not None:
            compat.interpolate_function(self.T, temperature)
        else:
            self.T.x.array[:] = self._T_loads
        thermal = temperature is not None or self.thermal_loads
        b = fpetsc.assemble_vector(self.L_form)
        fpetsc.apply_lifting(b, [self.a_form], [self.bcs])
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        fpetsc.set_bc(b, self.bcs)
        u = fem.Function(self.V, name="displacement")
        phase = "static_structural"
        if on_progress is not None:
            self.ksp.setMonitor(lambda _k, it, r: on_progress(1, 0.0, 0.0, phase, f"CG iteration {it}", float(r)))
        self.ksp.solve(b, compat.petsc_vector(u))
        self.ksp.cancelMonitor()
        b.destroy()
        u.x.scatter_forward()
        reason, its = self.ksp.getConvergedReason(), self.ksp.getIterationNumber()
        if reason <= 0:
            raise ElasticitySolverError(
                f"CG + GAMG did not converge: PETSc reason {reason} after {its} iterations, "
                f"residual {self.ksp.getResidualNorm():.3e}; raise solver.max_iterations, relax "
                "solver.rtol or check the boundary conditions and materials")
        if on_progress is not None:
            on_progress(1, 0.0, 100.0, phase, f"static solution done ({its} CG iterations)",
                        self.ksp.getResidualNorm())
        return self._result(u, thermal, its)

    def _result(self, u: Any, thermal: bool, its: int) -> ElasticityResult:
        import ufl
        from dolfinx import fem
        from mpi4py import MPI

        mesh, comm = self.fmesh.mesh, self.comm
        sigma = self.sigma(u)
        dev = sigma - ufl.tr(sigma) / 3 * ufl.Identity(3)
        vm = ufl.sqrt(1.5 * ufl.inner(dev, dev))
        Q0 = compat.dg0_space(mesh)
        vm0 = fem.Function(Q0, name="von_mises")
        vm0.interpolate(fem.Expression(vm, compat.interpolation_points(Q0)))
        S = fem.TensorFunctionSpace(mesh, ("DG", self.order - 1))
        stress = fem.Function(S, name="stress")
        stress.interpolate(fem.Expression(sigma, compat.interpolation_points(S)))
        u1 = u
        if self.order != 1:
            u1 = fem.Function(fem.VectorFunctionSpace(mesh, ("Lagrange", 1)), name="displacement")
            compat.interpolate_function(u1, u)
        vm1 = compat.lumped_projection(vm, compat.lagrange_space(mesh, 1), 2 * self.order, name="von_mises")
        n_owned = self.V.dofmap.index_map.size_local
        umax = comm.allreduce(float(np.linalg.norm(u.x.array[:3 * n_owned].reshape(-1, 3), axis=1).max(initial=0.0)),
                              op=MPI.MAX)
        n_cells = mesh.topology.index_map(3).size_local
        cell_vm = vm0.x.array[compat.cell_dofs(Q0)[:n_cells, 0]]
        local = np.array([cell_vm[compat.tagged_entities(self.fmesh.cell_tags, tag)[
            compat.tagged_entities(self.fmesh.cell_tags, tag) < n_cells]].max(initial=0.0)
            for tag in self.volumes.values()])
        peaks = np.empty_like(local)
        comm.Allreduce(local, peaks, op=MPI.MAX)
        by_volume = {n: float(p) for n, p in zip(self.volumes, peaks)}
        metrics = phys.structural_metrics(by_volume, self.yields, umax)
        T = None
        if thermal:
            T = fem.Function(self.T.function_space, name="temperature")
            T.x.array[:] = self.T.x.array
        return ElasticityResult(u, u1, stress, vm0, vm1, T, by_volume, dict(self.yields), umax,
                                metrics, its)

    def destroy(self) -> None:
        for obj in (self.ksp, self.A, self.nullspace):
            obj.destroy()
