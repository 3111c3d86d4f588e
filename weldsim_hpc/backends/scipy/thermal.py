"""Steady and transient heat conduction on one node with numpy/scipy — the formulation of
`backends/fenicsx/thermal.py`, term for term, so both backends agree to the solver tolerance:

    ρ c_p ∂T/∂t − ∇·(k ∇T) = Q,   k, ρc_p constant per volume group (per cell)

temperature (Dirichlet, re-evaluated each step when it depends on t), heat_flux and
convection on the EXTERIOR triangles of a group, weld_interface_heating q·v once on every
triangle of the group (interior or exterior: for continuous v, q·avg(v)·dS = q·v), q from
`physics.thermal.weld_heat_flux_W_m2` with the measured area; heat_source per volume or
everywhere. Values (numbers or expressions of x, y, z, t) are interpolated into the
temperature space. θ-scheme with consistent mass, solved for the increment:

    (M/Δt + θK) ΔT = θF(tⁿ⁺¹) + (1−θ)F(tⁿ) + sₙW + h·T_inf − K Tⁿ,   ΔT = g − Tⁿ on Dirichlet dofs

on `physics.thermal.time_grid` (the weld end is a grid point); steady: K ΔT = F + W +
h·T_inf − K T₀. Every integrand is a polynomial on an affine cell and is integrated
exactly (fe.py), so the matrices equal dolfinx's to round-off.

Public API::

    solve_thermal(mesh, case, materials, *, on_progress=None, on_step=None,
                  on_step_state=None, start=None) -> ThermalResult
    ThermalStepState, ThermalResult (fields are numpy arrays on `space`)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ...case import CaseSpec, ConvectionBC, HeatFluxBC, HeatSourceLoad, TemperatureBC, WeldInterfaceHeatingBC
from ...case_checks import material_key_for_volume
from ...errors import MaterialError, SolverError, WeldSimError
from ...expressions import Expression, as_value
from ...materials import Material
from ...physics import thermal as phys
from .fe import Facets, Space, solve_with_dirichlet
from .solvers import SPDSolver

ProgressCallback = Callable[[int, float, float, str, str, float], None]
#: on_step(k, t_s, T) after step k; T the dof values (copy them to keep them)
StepCallback = Callable[[int, float, np.ndarray], None]


class ThermalSolverError(SolverError):
    """The linear solver did not converge."""


@dataclass(frozen=True)
class ThermalStepState:
    """A transient state after `step` (for checkpoints): values in this space's dof order,
    the cumulative heat input and the running peak per volume (volume_names order)."""

    step: int
    t: float
    values: np.ndarray
    energy_in_J: float
    peaks_K: np.ndarray
    volume_names: tuple[str, ...] = ()
    n_steps: int = 0


@dataclass
class ThermalResult:
    """As the fenicsx ThermalResult; temperature is the dof vector on `space` (K),
    temperature_p1 the nodal values (per mesh point), rho_c per cell."""

    temperature: np.ndarray
    temperature_p1: np.ndarray
    space: Space
    rho_c: np.ndarray
    times_s: np.ndarray
    T_max_K: np.ndarray
    heat_content_J: np.ndarray
    energy_in_J: np.ndarray
    heat_input_W: float
    T_max_by_volume_K: dict[str, float]
    weld_area_m2: float | None = None
    weld_flux_W_m2: float | None = None
    ksp_iterations: list[int] = field(default_factory=list)

    def metrics(self, materials_by_volume: Mapping[str, Material], transient: bool = True) -> phys.ThermalMetrics:
        solidus = {v: material_for(v, materials_by_volume).solidus_K for v in self.T_max_by_volume_K}
        return phys.thermal_metrics(self.T_max_by_volume_K, solidus,
                                    float(self.energy_in_J[-1]) if transient else None)


# --- shared helpers (also used by elasticity.py) ---------------------------------------------
def material_for(volume: str, materials: Mapping[str, Material]) -> Material:
    key = material_key_for_volume(volume, materials)
    if key is None:
        raise MaterialError(f"materials: no material for volume group {volume!r} "
                            f"(given: {', '.join(sorted(materials)) or 'none'})")
    return materials[key]


def group_tag(groups: Mapping[str, tuple[int, int]], name: str, dim: int, where: str) -> int:
    if name not in groups or groups[name][0] != dim:
        known = sorted(n for n, (d, _) in groups.items() if d == dim)
        kind = "surface" if dim == 2 else "volume"
        raise WeldSimError(f"{where}: no {kind} group {name!r} in the mesh (known: {', '.join(known)})")
    return groups[name][1]


def volume_groups(mesh: Any) -> dict[str, int]:
    """Volume group name -> tag, in the mesh's group order."""
    return {n: tag for n, (d, tag) in mesh.groups.items() if d == 3}


def cellwise(mesh: Any, volumes: Mapping[str, int], values: Mapping[str, float]) -> np.ndarray:
    """Per-cell array from a value per volume; every cell needs one."""
    out = np.full(len(mesh.cells), np.nan)
    for name, tag in volumes.items():
        out[mesh.cell_tags == tag] = values[name]
    n_unset = int(np.isnan(out).sum())
    if n_unset:
        raise WeldSimError(f"{n_unset} cells carry no volume tag: every cell needs a material")
    return out


class Value:
    """A case value: a number, or an expression interpolated into a space at time t."""

    def __init__(self, raw: float | str, where: str):
        value = as_value(raw, where)
        if isinstance(value, Expression) and value.is_constant:
            value = float(value.evaluate(0.0, 0.0, 0.0, 0.0))
        self.expr = value if isinstance(value, Expression) else None
        self.number = None if self.expr is not None else float(value)

    @property
    def time_dependent(self) -> bool:
        return self.expr is not None and self.expr.uses_time

    def at(self, coords: np.ndarray, t: float) -> np.ndarray:
        if self.expr is None:
            return np.full(len(coords), self.number)
        return np.asarray(self.expr.evaluate(coords[:, 0], coords[:, 1], coords[:, 2], t), dtype=np.float64) \
            * np.ones(len(coords))


# --- the solver ------------------------------------------------------------------------------
def solve_thermal(mesh: Any, case: CaseSpec, materials_by_volume: Mapping[str, Material], *,
                  on_progress: ProgressCallback | None = None, on_step: StepCallback | None = None,
                  on_step_state: Callable[[ThermalStepState, np.ndarray], None] | None = None,
                  start: ThermalStepState | None = None, space: Space | None = None) -> ThermalResult:
    """Solve case.analysis ('thermal_transient'; anything else steady) on `mesh` (MeshData)."""
    groups = mesh.groups
    transient = case.analysis == "thermal_transient"
    if transient and case.time is None:
        raise WeldSimError("time: a thermal_transient analysis needs the time section (end_s, dt_s)")
    order = case.effective_element_order
    V = space if space is not None and space.order == order else Space(mesh.points, mesh.cells, order)
    volumes = volume_groups(mesh)
    mats = {n: material_for(n, materials_by_volume) for n in volumes}
    kappa = cellwise(mesh, volumes, {n: m.conductivity_W_mK for n, m in mats.items()})
    rho_c = cellwise(mesh, volumes, {n: m.density_kg_m3 * m.specific_heat_J_kgK for n, m in mats.items()})
    T0 = case.thermal.T_initial_K
    n = V.n_dofs
    facets = Facets(V, mesh.facets, mesh.facet_tags)

    K = V.assemble(V.stiffness_local(kappa))
    flux_terms: list[tuple[Value, np.ndarray]] = []        # (value, exterior facet indices)
    source_terms: list[tuple[Value, np.ndarray | None]] = []  # (value, cells or None)
    conv_vec = None
    dirichlet: list[tuple[Value, np.ndarray]] = []
    weld_tags: list[int] = []
    for i, bc in enumerate(case.boundary_conditions):
        where = f"boundary_conditions[{i}]"
        if isinstance(bc, TemperatureBC):
            tag = group_tag(groups, bc.boundary, 2, f"{where}.boundary")
            dirichlet.append((Value(bc.value, f"{where}.value"), V.entity_dofs(2, mesh.facets[mesh.facet_tags == tag])))
        elif isinstance(bc, HeatFluxBC):
            tag = group_tag(groups, bc.boundary, 2, f"{where}.boundary")
            flux_terms.append((Value(bc.value, f"{where}.value"), facets.select(tag, True)))
        elif isinstance(bc, ConvectionBC):
            tag = group_tag(groups, bc.boundary, 2, f"{where}.boundary")
            idx = facets.select(tag, True)
            K = K + facets.assemble_matrix(idx, facets.mass_local(idx, bc.h_W_m2K), n)
            load = facets.assemble_vector(idx, facets.load(idx, np.full(n, bc.h_W_m2K * bc.T_inf_K)), n)
            conv_vec = load if conv_vec is None else conv_vec + load
        elif isinstance(bc, WeldInterfaceHeatingBC):
            if case.weld is None:
                raise WeldSimError(f"{where}: weld_interface_heating needs the weld section")
            weld_tags.append(group_tag(groups, bc.boundary, 2, f"{where}.boundary"))
    for i, load in enumerate(case.loads):
        if isinstance(load, HeatSourceLoad):
            where = f"loads[{i}]"
            cells = None if load.volume is None else np.flatnonzero(
                mesh.cell_tags == group_tag(groups, load.volume, 3, f"{where}.volume"))
            source_terms.append((Value(load.value, f"{where}.value"), cells))
    if not transient and not dirichlet and conv_vec is None:
        raise WeldSimError("boundary_conditions: a steady thermal analysis needs a temperature "
                           "or convection boundary (otherwise the temperature is undetermined)")

    weld_area = weld_flux = None
    W = None
    if weld_tags:
        idx = np.concatenate([facets.select(t, False) for t in weld_tags])
        weld_area = float(facets.area[idx].sum())
        if not weld_area > 0:
            raise WeldSimError("boundary_conditions: the weld_interface_heating surface has zero area")
        weld_flux = phys.weld_heat_flux_W_m2(case.weld, weld_area)
        W = facets.assemble_vector(idx, facets.load(idx, np.full(n, weld_flux)), n)

    def prescribed(t: float) -> np.ndarray:
        F = np.zeros(n)
        for val, idx in flux_terms:
            F += facets.assemble_vector(idx, facets.load(idx, val.at(V.dof_coords, t)), n)
        for val, cells in source_terms:
            F += V.load_from_nodal(val.at(V.dof_coords, t), cells)
        return F

    bc_dofs = np.concatenate([d for _, d in dirichlet]) if dirichlet else np.zeros(0, np.int64)

    def bc_values(t: float) -> np.ndarray:
        return np.concatenate([v.at(V.dof_coords[d], t) for v, d in dirichlet]) if dirichlet else np.zeros(0)

    M = V.assemble(V.mass_local(rho_c)) if transient else None   # steady: only 1ᵀM below
    s = case.solver
    state = {"step": 0, "t": 0.0, "percent": 0.0}
    phase = case.analysis if transient else "thermal_steady"
    monitor = None
    if on_progress is not None:
        def monitor(it: int, rnorm: float) -> None:
            on_progress(state["step"], state["t"], state["percent"], phase,
                        f"step {state['step']}: CG iteration {it}", rnorm)
    solver = SPDSolver(s.rtol, s.atol, s.max_iterations, "thermal", monitor)
    tracker = PeakTracker(V, mesh, volumes)
    T = np.full(n, float(T0))
    dT_prev = np.zeros(n)

    ones_M = heat_capacity_vector(V, rho_c)   # 1ᵀM: ∫ρc φ_i dx (the basis sums to one)

    def content() -> float:
        return float(ones_M @ (T - T0))

    def step_solve(A: Any, F: np.ndarray, t: float, key: object) -> None:
        nonlocal T, dT_prev
        b = F - K @ T
        if conv_vec is not None:
            b = b + conv_vec
        inc_values = bc_values(t) - T[bc_dofs]

        def sub(Aff, rhs, x0, free):
            return solver(Aff, rhs, x0, context=f" at step {state['step']} (t = {state['t']:g} s)", key=key)
        dT = solve_with_dirichlet(A, b, bc_dofs, inc_values, sub, x0=dT_prev)
        if not np.isfinite(dT).all():
            raise ThermalSolverError(f"the temperature became NaN at step {state['step']}")
        T = T + dT
        dT_prev = dT

    times, T_max, contents, energy = [0.0], [tracker.update(T)], [content()], [0.0]
    if not transient:
        F = prescribed(0.0)
        heat_in = F.sum() + (W.sum() if W is not None else 0.0)
        if W is not None:
            F = F + W
        state.update(step=1, percent=0.0)
        step_solve(K, F, 0.0, key=None)
        tracker.reset()
        T_max[0], contents[0] = tracker.update(T), content()
        if on_progress is not None:
            on_progress(1, 0.0, 100.0, phase, "steady solution done", solver.residual)
    else:
        theta = case.time.theta
        weld_end = case.weld.weld_time_s if W is not None else None
        grid = phys.time_grid(case.time.end_s, case.time.dt_s, (weld_end,) if weld_end else ())
        n_steps = len(grid) - 1
        first = 1
        if start is not None:
            if not (0 <= start.step < n_steps and math.isclose(grid[start.step], start.t, rel_tol=1e-12, abs_tol=1e-15)):
                raise WeldSimError(f"the checkpoint (step {start.step}, t = {start.t:g} s) does not "
                                   "lie on this case's time grid")
            T = np.array(start.values, dtype=np.float64)
            first = start.step + 1
            tracker.peak = np.array(start.peaks_K, dtype=float).copy()
            times, T_max, contents, energy = [start.t], [tracker.update(T)], [content()], [start.energy_in_J]
        F_old = prescribed(grid[first - 1])
        heat_in = 0.0
        A = None
        dt_assembled = None
        for k in range(first, n_steps + 1):
            t_old, t = grid[k - 1], grid[k]
            dt = t - t_old
            state.update(step=k, t=t, percent=100.0 * (k - 1) / n_steps)
            if dt_assembled is None or not math.isclose(dt, dt_assembled, rel_tol=1e-12):
                A = (M * (1.0 / dt) + K * theta).tocsr()
                dt_assembled = dt
            F_new = prescribed(t)
            F = theta * F_new + (1.0 - theta) * F_old if theta < 1 else F_new.copy()
            weld_on = W is not None and t <= weld_end * (1 + 1e-12)
            heat_in = F.sum() + (W.sum() if weld_on else 0.0)
            if weld_on:
                F = F + W
            step_solve(A, F, t, key=("dt", dt_assembled))
            F_old = F_new
            times.append(t)
            T_max.append(tracker.update(T))
            contents.append(content())
            energy.append(energy[-1] + dt * heat_in)
            if on_step is not None:
                on_step(k, t, T)
            if on_step_state is not None:
                on_step_state(ThermalStepState(k, t, T.copy(), energy[-1], tracker.peak.copy(),
                                               tuple(tracker.names), n_steps), T)
            if on_progress is not None:
                on_progress(k, t, 100.0 * k / n_steps, phase,
                            f"step {k}/{n_steps}: t = {t:.6g} s, T_max = {T_max[-1]:.2f} K", solver.residual)
    return ThermalResult(
        temperature=T, temperature_p1=V.p1_values(T), space=V, rho_c=rho_c, times_s=np.array(times),
        T_max_K=np.array(T_max), heat_content_J=np.array(contents), energy_in_J=np.array(energy),
        heat_input_W=float(heat_in), T_max_by_volume_K=tracker.peaks(), weld_area_m2=weld_area,
        weld_flux_W_m2=weld_flux, ksp_iterations=solver.iterations)


def heat_capacity_vector(V: Space, rho_c: np.ndarray) -> np.ndarray:
    """1ᵀM = ∫ρc φ_i dx per dof (M the consistent ρc-mass matrix; the basis sums to one):
    the column sums of the local mass matrices summed into a vector, without assembling M."""
    return V.assemble_vector((rho_c * V.absdet)[:, None] * V.mass_ref().sum(axis=0)[None])


def heat_content_J(result: ThermalResult, T0: float) -> float:
    """∫ρc_p (T − T0) dx of a result's final temperature, J."""
    V = result.space
    M = V.assemble(V.mass_local(result.rho_c))
    return float(np.ones(V.n_dofs) @ (M @ (result.temperature - T0)))


class PeakTracker:
    """Running peak of the nodal temperature: overall (per time) and per volume (over time)."""

    def __init__(self, V: Space, mesh: Any, volumes: Mapping[str, int]):
        self.names = list(volumes)
        self.dofs = []
        for name in self.names:
            mark = np.zeros(V.n_dofs, dtype=bool)   # np.unique by marking: no sort
            mark[V.cell_dofs[mesh.cell_tags == volumes[name]].reshape(-1)] = True
            self.dofs.append(np.flatnonzero(mark))
        self.peak = np.full(len(self.names), -np.inf)

    def update(self, T: np.ndarray) -> float:
        self.peak = np.maximum(self.peak, [T[d].max() if len(d) else -np.inf for d in self.dofs])
        return float(T.max())

    def reset(self) -> None:
        self.peak[:] = -np.inf

    def peaks(self) -> dict[str, float]:
        return {n: float(p) for n, p in zip(self.names, self.peak)}
