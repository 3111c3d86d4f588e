"""Static linear elasticity with thermal strain on one node (numpy/scipy) — the formulation
of `backends/fenicsx/elasticity.py`:

    −∇·σ = f,   σ = 2μ ε(u) + λ tr ε(u) I − (3λ + 2μ) α (T − T_ref) I

λ, μ, α per cell; u vector P(case.effective_element_order), blocked dofs 3·node + c.
fixed / displacement (component subsets, expressions at t = 0) on surface, edge or point
groups (dofs on the closure of the group's entities); pressure −p n and traction on the
exterior triangles of a surface; body_force; temperature_field loads or a temperature
field (any P1/P2 field from solve_thermal) carried cellwise in DG(max(order, its degree)),
as dolfinx does. The constraint check (`check_constrained`) raises NotConstrainedError with
the fenicsx message. von Mises per cell at the cell midpoint; `stress_at` evaluates the
DG(order − 1) interpolant of σ (mean over the cells sharing a point). Solver: CG +
pyamg smoothed aggregation with the six rigid-body modes as near-nullspace.

Public API::

    ElasticityProblem(mesh, case, materials, temperature_degree=None).solve(temperature=None)
    solve_elasticity(mesh, case, materials, *, temperature=None, on_progress=None)
    check_constrained(coords, constrained, points), NotConstrainedError, NOT_CONSTRAINED_MESSAGE
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ...case import BodyForceLoad, CaseSpec, DisplacementBC, FixedBC, PressureBC, TemperatureFieldLoad, TractionBC
from ...errors import SolverError, WeldSimError
from ...materials import Material
from ...physics import structural as phys
from .fe import (Facets, Space, containing_cells, dirichlet_rhs, dirichlet_system, reference_nodes, tet_basis,
                 tet_rule)
from .solvers import SPDSolver, rigid_body_modes
from .thermal import Value, cellwise, group_tag, material_for, volume_groups

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
class TemperatureField:
    """A temperature (K) as a continuous field: dof values on a scalar Space."""

    space: Space
    values: np.ndarray


@dataclass
class ElasticityResult:
    """What a static solve returns. Pa, m, K.

    displacement (n_dofs, 3) on `space`; displacement_p1 (n_points, 3) nodal; von_mises_dg0
    (n_cells,) at cell midpoints; stress_nodes (n_cells, 1|4, 3, 3) the DG(order−1) stress;
    temperature (n_cells, k) the cellwise DG temperature used, None without thermal strain.
    """

    displacement: np.ndarray
    displacement_p1: np.ndarray
    space: Space
    von_mises_dg0: np.ndarray
    stress_nodes: np.ndarray
    temperature: np.ndarray | None
    max_von_mises_by_volume_Pa: dict[str, float]
    yield_by_volume_Pa: dict[str, float]
    max_displacement_m: float
    metrics: phys.StructuralMetrics
    ksp_iterations: int

    def stress_at(self, points: np.ndarray) -> np.ndarray:
        """(n, 6) σ (xx, yy, zz, xy, yz, xz) at (n, 3) points: the mean over the cells sharing
        a point of the DG(order−1) stress; nan outside the mesh."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.full((len(pts), 3, 3), np.nan)
        deg = self.space.order - 1
        for i, p in enumerate(pts):
            cells, ref = containing_cells(self.space, p)
            if len(cells):
                N = np.ones((len(cells), 1)) if deg == 0 else tet_basis(1, ref)[0]
                out[i] = np.einsum("ka,kaij->kij", N, self.stress_nodes[cells]).mean(axis=0)
        return phys.tensor_to_voigt(out)


def check_constrained(coords: np.ndarray, constrained: np.ndarray, points: np.ndarray) -> None:
    """Raise NotConstrainedError unless the constrained blocked dofs (3·dof + c, dof
    coordinates `coords`) kill all six rigid-body modes (as the fenicsx check: G = Σ r_k r_l
    over the constrained dofs, scaled about the mesh centre, must have rank 6)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre, size = 0.5 * (lo + hi), max(float(np.max(hi - lo)), 1e-300)
    dofs = np.unique(np.asarray(constrained, dtype=np.int64))
    p = (coords[dofs // 3] - centre) / size
    comp = dofs % 3
    rows = np.zeros((len(dofs), 6))
    rows[np.arange(len(dofs)), comp] = 1.0
    for k in range(3):
        rot = np.cross(np.eye(3)[k], p) if len(p) else np.zeros((0, 3))
        rows[:, 3 + k] = rot[np.arange(len(dofs)), comp]
    eig = np.linalg.eigvalsh(rows.T @ rows)
    if not eig[-1] > 0 or eig[0] <= 1e-10 * eig[-1]:
        raise NotConstrainedError()


def _entities(mesh: Any, name: str, where: str) -> tuple[int, np.ndarray]:
    if name not in mesh.groups or mesh.groups[name][0] > 2:
        known = sorted(n for n, (d, _) in mesh.groups.items() if d <= 2)
        raise WeldSimError(f"{where}: no surface, edge or point group {name!r} in the mesh "
                           f"(known: {', '.join(known)})")
    dim, tag = mesh.groups[name]
    arrays = {2: (mesh.facets, mesh.facet_tags), 1: (mesh.edges, mesh.edge_tags), 0: (mesh.vertices, mesh.vertex_tags)}
    ents, tags = arrays[dim]
    return dim, ents[tags == tag]


def solve_elasticity(mesh: Any, case: CaseSpec, materials_by_volume: Mapping[str, Material], *,
                     temperature: TemperatureField | None = None,
                     on_progress: ProgressCallback | None = None) -> ElasticityResult:
    """Static elasticity of `case` on `mesh` (MeshData); temperature: a TemperatureField
    (K) for the thermal strain, else the case's temperature_field loads."""
    degree = None if temperature is None else temperature.space.order
    return ElasticityProblem(mesh, case, materials_by_volume, temperature_degree=degree).solve(temperature, on_progress)


class ElasticityProblem:
    """Set-up (space, BCs, constraint check, K) once; `solve` for many temperature fields."""

    def __init__(self, mesh: Any, case: CaseSpec, materials_by_volume: Mapping[str, Material], *,
                 temperature_degree: int | None = None):
        self.mesh, self.case = mesh, case
        self.order = order = case.effective_element_order
        self.V = V = Space(mesh.points, mesh.cells, order)
        self.bc_dofs, self.bc_values = self._dirichlet()
        check_constrained(V.dof_coords, self.bc_dofs, mesh.points)
        self.volumes = volume_groups(mesh)
        mats = {n: material_for(n, materials_by_volume) for n in self.volumes}
        self.lam = cellwise(mesh, self.volumes, {n: m.lame_parameters()[0] for n, m in mats.items()})
        self.mu = cellwise(mesh, self.volumes, {n: m.lame_parameters()[1] for n, m in mats.items()})
        self.alpha = cellwise(mesh, self.volumes, {n: m.expansion_1_K for n, m in mats.items()})
        self.yields = {n: m.yield_strength_Pa for n, m in mats.items()}
        self.T_ref = case.thermal.T_ref_K
        self.t_degree = max(order, temperature_degree or 1)
        self.T_loads, self.thermal_loads = self._temperature_loads()
        n3 = 3 * V.n_dofs
        self.K = V.assemble(V.elasticity_local(self.lam, self.mu), block=3)
        self.F_mech = self._mechanical_loads(n3)
        self.B = rigid_body_modes(V.dof_coords)
        self.A_bc = None
        s = case.solver
        self.solver = SPDSolver(s.rtol, s.atol, s.max_iterations, "elasticity")

    # --- set-up ----------------------------------------------------------------------------
    def _dirichlet(self) -> tuple[np.ndarray, np.ndarray]:
        V = self.V
        dofs, values = [np.zeros(0, np.int64)], [np.zeros(0)]
        for i, bc in enumerate(self.case.boundary_conditions):
            where = f"boundary_conditions[{i}]"
            if isinstance(bc, FixedBC):
                dim, ents = _entities(self.mesh, bc.boundary, f"{where}.boundary")
                d = V.entity_dofs(dim, ents)
                dofs += [3 * d + c for c in range(3)]
                values += [np.zeros(len(d))] * 3
            elif isinstance(bc, DisplacementBC):
                dim, ents = _entities(self.mesh, bc.boundary, f"{where}.boundary")
                d = V.entity_dofs(dim, ents)
                for c, raw in enumerate(bc.value):
                    if raw is None:
                        continue
                    dofs.append(3 * d + c)
                    values.append(Value(raw, f"{where}.value[{c}]").at(V.dof_coords[d], 0.0))
        return np.concatenate(dofs), np.concatenate(values)

    def _temperature_loads(self) -> tuple[np.ndarray, bool]:
        """Cellwise DG(t_degree) nodal temperatures from the temperature_field loads."""
        V = self.V
        T = np.full((len(self.mesh.cells), len(reference_nodes(self.t_degree))), self.T_ref)
        found = False
        nodes = None
        for i, load in enumerate(self.case.loads):
            if isinstance(load, TemperatureFieldLoad):
                where = f"loads[{i}]"
                cells = np.arange(len(T)) if load.volume is None else np.flatnonzero(
                    self.mesh.cell_tags == group_tag(self.mesh.groups, load.volume, 3, f"{where}.volume"))
                if nodes is None:
                    nodes = V.physical(reference_nodes(self.t_degree))
                x = nodes[cells].reshape(-1, 3)
                T[cells] = Value(load.value, f"{where}.value").at(x, 0.0).reshape(len(cells), -1)
                found = True
        return T, found

    def _mechanical_loads(self, n3: int) -> np.ndarray:
        V, mesh = self.V, self.mesh
        F = np.zeros(n3)
        facets = None
        for i, bc in enumerate(self.case.boundary_conditions):
            where = f"boundary_conditions[{i}]"
            if isinstance(bc, (PressureBC, TractionBC)):
                if facets is None:
                    facets = Facets(V, mesh.facets, mesh.facet_tags)
                idx = facets.select(group_tag(mesh.groups, bc.boundary, 2, f"{where}.boundary"), True)
                if isinstance(bc, PressureBC):
                    local = facets.load(idx, Value(bc.value, f"{where}.value").at(V.dof_coords, 0.0))
                    comps = [-facets.normal[idx, c, None] * local for c in range(3)]
                else:
                    comps = [facets.load(idx, Value(r, f"{where}.value[{c}]").at(V.dof_coords, 0.0))
                             for c, r in enumerate(bc.value)]
                for c in range(3):
                    F[c::3] += facets.assemble_vector(idx, comps[c], V.n_dofs)
        for i, load in enumerate(self.case.loads):
            if isinstance(load, BodyForceLoad):
                where = f"loads[{i}]"
                cells = None if load.volume is None else np.flatnonzero(
                    mesh.cell_tags == group_tag(mesh.groups, load.volume, 3, f"{where}.volume"))
                for c, r in enumerate(load.value):
                    F[c::3] += V.load_from_nodal(Value(r, f"{where}.value[{c}]").at(V.dof_coords, 0.0), cells)
        return F

    def cell_temperature(self, temperature: TemperatureField) -> np.ndarray:
        """A continuous P1/P2 field interpolated into DG(t_degree), cellwise nodal values."""
        Vt = temperature.space
        if Vt.order > self.t_degree:
            raise WeldSimError(f"a P{Vt.order} temperature needs temperature_degree={Vt.order}")
        N, _ = tet_basis(Vt.order, reference_nodes(self.t_degree))
        return temperature.values[Vt.cell_dofs] @ N.T

    def _thermal_stress_at(self, Tcell: np.ndarray, xi: np.ndarray) -> np.ndarray:
        """(3λ+2μ)α(T − T_ref) at reference points xi: (m, nq)."""
        N, _ = tet_basis(self.t_degree, xi)
        return ((3 * self.lam + 2 * self.mu) * self.alpha)[:, None] * (Tcell @ N.T - self.T_ref)

    # --- solve -------------------------------------------------------------------------------
    def solve(self, temperature: TemperatureField | None = None,
              on_progress: ProgressCallback | None = None) -> ElasticityResult:
        V = self.V
        Tcell = self.cell_temperature(temperature) if temperature is not None else self.T_loads
        thermal = temperature is not None or self.thermal_loads
        F = self.F_mech.copy()
        if thermal:
            xi, w = tet_rule(self.t_degree + self.order - 1)
            G = V.grads(xi)
            s = self._thermal_stress_at(Tcell, xi) * (V.absdet[:, None] * w[None])
            F += V.assemble_vector(np.einsum("cq,cqai->cai", s, G).reshape(len(G), -1), block=3)
        phase = "static_structural"
        solver = self.solver
        if on_progress is not None:
            solver.on_iteration = lambda it, r: on_progress(1, 0.0, 0.0, phase, f"CG iteration {it}", r)

        if self.A_bc is None:
            self.A_bc, rhs = dirichlet_system(self.K, F, self.bc_dofs, self.bc_values)
        else:  # the matrix is kept: only the right-hand side changes
            rhs = dirichlet_rhs(self.K, F, self.bc_dofs, self.bc_values)
        u = solver(self.A_bc, rhs, None, near_nullspace=self.B, key="K", block=3)
        solver.on_iteration = None
        its = solver.iterations[-1] if solver.iterations else 0
        if on_progress is not None:
            on_progress(1, 0.0, 100.0, phase, f"static solution done ({its} CG iterations)", solver.residual)
        return self._result(u.reshape(-1, 3), Tcell, thermal, its)

    def stress_at_reference(self, u: np.ndarray, Tcell: np.ndarray, xi: np.ndarray) -> np.ndarray:
        """σ (m, nq, 3, 3) at reference points xi of every cell."""
        G = self.V.grads(xi)
        grad = np.einsum("caj,cqai->cqji", u[self.V.cell_dofs], G)
        eps = 0.5 * (grad + np.swapaxes(grad, -1, -2))
        tr = np.trace(eps, axis1=-2, axis2=-1)
        iso = self.lam[:, None] * tr - self._thermal_stress_at(Tcell, xi)
        return 2 * self.mu[:, None, None, None] * eps + iso[..., None, None] * np.eye(3)

    def _result(self, u: np.ndarray, Tcell: np.ndarray, thermal: bool, its: int) -> ElasticityResult:
        V = self.V
        mid = np.full((1, 3), 0.25)
        vm0 = phys.von_mises(self.stress_at_reference(u, Tcell, mid)[:, 0])
        nodes = mid if self.order == 1 else reference_nodes(1)
        stress_nodes = self.stress_at_reference(u, Tcell, nodes)
        umax = float(np.linalg.norm(u, axis=1).max(initial=0.0))
        by_volume = {n: float(vm0[self.mesh.cell_tags == tag].max(initial=0.0)) for n, tag in self.volumes.items()}
        metrics = phys.structural_metrics(by_volume, self.yields, umax)
        return ElasticityResult(u, V.p1_values(u), V, vm0, stress_nodes, Tcell.copy() if thermal else None,
                                by_volume, dict(self.yields), umax, metrics, its)
