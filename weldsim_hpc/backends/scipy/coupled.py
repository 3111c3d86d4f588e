"""Coupled thermo-structural analysis on one node (numpy/scipy): thermal first, then
elasticity with the thermal strain — `backends/fenicsx/coupled.py` step for step (P1
temperature unless case.element_order; the elastic problem and its constraint check come
BEFORE the thermal solve; transient: stresses at every checkpoint_every-th step and at the
last one, metrics as maxima over those times).

Public API::

    solve_coupled(mesh, case, materials, *, on_progress=None, on_step=None,
                  thermal_options=None) -> CoupledResult
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ...case import THERMAL_BC_TYPES, CaseSpec, HeatSourceLoad, TemperatureFieldLoad
from ...errors import WeldSimError
from ...materials import Material
from ...physics import structural as phys
from .elasticity import ElasticityProblem, ElasticityResult, ProgressCallback, TemperatureField
from .thermal import StepCallback, ThermalResult, solve_thermal


@dataclass
class CoupledResult:
    """As the fenicsx CoupledResult (structural at the final temperature, thermal or None,
    history (step, t, max von Mises), per-volume peaks over time, metrics over time)."""

    structural: ElasticityResult
    thermal: ThermalResult | None
    history: list[tuple[int, float, float]] = field(default_factory=list)
    max_von_mises_by_volume_Pa: dict[str, float] = field(default_factory=dict)
    metrics: phys.StructuralMetrics | None = None

    @property
    def max_von_mises_Pa(self) -> float:
        return max(self.max_von_mises_by_volume_Pa.values())


def _has_thermal_part(case: CaseSpec) -> bool:
    return any(bc.type in THERMAL_BC_TYPES for bc in case.boundary_conditions) or \
        any(isinstance(load, HeatSourceLoad) for load in case.loads)


def solve_coupled(mesh: Any, case: CaseSpec, materials: Mapping[str, Material], *,
                  on_progress: ProgressCallback | None = None, on_step: StepCallback | None = None,
                  thermal_options: Mapping[str, Any] | None = None) -> CoupledResult:
    thermal_part = _has_thermal_part(case)
    if not thermal_part and not any(isinstance(ld, TemperatureFieldLoad) for ld in case.loads):
        raise WeldSimError("boundary_conditions: a coupled thermo-structural analysis needs thermal "
                           "boundary conditions (temperature, heat_flux, convection, "
                           "weld_interface_heating), a heat_source or a temperature_field load")
    t_order = case.element_order or 1
    problem = ElasticityProblem(mesh, case, materials, temperature_degree=t_order)
    if not thermal_part:
        final = problem.solve(None, on_progress)
        return _result(final, None, [(0, 0.0, final.metrics.max_von_mises_Pa)], [final])
    transient = case.time is not None
    thermal_case = case.model_copy(update={
        "analysis": "thermal_transient" if transient else "thermal_steady", "element_order": t_order})
    every = case.time.checkpoint_every if transient else 0
    snapshots: list[tuple[int, float, ElasticityResult]] = []
    space = problem.V if problem.order == t_order else None
    holder: dict[str, Any] = {}

    def step(k: int, t: float, T: Any) -> None:
        if on_step is not None:
            on_step(k, t, T)
        if every and k % every == 0:
            snapshots.append((k, t, problem.solve(TemperatureField(holder["space"], T))))

    from .fe import Space

    holder["space"] = space if space is not None else Space(mesh.points, mesh.cells, t_order)
    thermal = solve_thermal(mesh, thermal_case, materials, on_progress=on_progress, on_step=step,
                            space=holder["space"], **dict(thermal_options or {}))
    n = len(thermal.times_s) - 1
    if snapshots and snapshots[-1][0] == n:
        final = snapshots[-1][2]
    else:
        final = problem.solve(TemperatureField(thermal.space, thermal.temperature), on_progress)
        snapshots.append((n, float(thermal.times_s[-1]), final))
    history = [(k, t, r.metrics.max_von_mises_Pa) for k, t, r in snapshots]
    return _result(final, thermal, history, [r for _, _, r in snapshots])


def _result(final: ElasticityResult, thermal: ThermalResult | None, history: list,
            results: list[ElasticityResult]) -> CoupledResult:
    peaks = {v: max(r.max_von_mises_by_volume_Pa[v] for r in results) for v in final.max_von_mises_by_volume_Pa}
    metrics = phys.structural_metrics(peaks, final.yield_by_volume_Pa, max(r.max_displacement_m for r in results))
    return CoupledResult(final, thermal, history, peaks, metrics)
