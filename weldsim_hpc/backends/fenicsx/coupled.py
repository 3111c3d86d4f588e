"""Coupled thermo-structural analysis on dolfinx 0.5 (collective, MPI): thermal first,
then linear elasticity with the thermal strain α (T − T_ref) (one-way coupling).

Where the temperature comes from:

* the case has thermal boundary conditions (temperature, heat_flux, convection,
  weld_interface_heating) or heat_source loads → `solve_thermal`: steady without a `time`
  section, transient with one. Transient: the stresses are computed at every
  case.time.checkpoint_every-th step and at the last step, and the metrics report the
  maximum von Mises over those times (per volume); the returned fields are the final ones.
* otherwise a temperature_field load (an expression of x, y, z in K) → thermal strain
  directly, no thermal solve.

Element orders: the temperature is P1 unless case.element_order is given (then that
order); the displacement is P(case.effective_element_order), quadratic by default. The
elastic problem (constraint check, K, GAMG set-up) is built BEFORE the thermal solve, so
an unconstrained structure fails at once (NotConstrainedError, every rank), and K is
assembled once for all checkpoint steps.

Public API::

    solve_coupled(fmesh, comm, case, materials, *, on_progress=None, on_step=None)
        -> CoupledResult
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ...case import THERMAL_BC_TYPES, CaseSpec, HeatSourceLoad, TemperatureFieldLoad
from ...errors import WeldSimError
from ...materials import Material
from ...physics import structural as phys
from .elasticity import ElasticityProblem, ElasticityResult, ProgressCallback
from .thermal import StepCallback, ThermalResult, solve_thermal


@dataclass
class CoupledResult:
    """What `solve_coupled` returns (identical scalars on every rank). Pa, m, K, s.

    structural:      the ElasticityResult at the final temperature
    thermal:         the ThermalResult (None when a temperature_field load was used)
    history:         (step, t_s, max von Mises Pa) at every stress evaluation (steady: one)
    max_von_mises_by_volume_Pa: peak cellwise von Mises of each volume over those times
    metrics:         StructuralMetrics over time (max_von_mises_Pa, von_mises_over_yield
                     with its warning above 1, max_displacement_m — all maxima over time)
    """

    structural: ElasticityResult
    thermal: ThermalResult | None
    history: list[tuple[int, float, float]] = field(default_factory=list)
    max_von_mises_by_volume_Pa: dict[str, float] = field(default_factory=dict)
    metrics: phys.StructuralMetrics | None = None

    @property
    def max_von_mises_Pa(self) -> float:
        """Peak von Mises over the body and over the evaluated times, Pa."""
        return max(self.max_von_mises_by_volume_Pa.values())


def _has_thermal_part(case: CaseSpec) -> bool:
    return any(bc.type in THERMAL_BC_TYPES for bc in case.boundary_conditions) or \
        any(isinstance(load, HeatSourceLoad) for load in case.loads)


def solve_coupled(fmesh: Any, comm: Any, case: CaseSpec, materials: Mapping[str, Material],
                  *, on_progress: ProgressCallback | None = None,
                  on_step: StepCallback | None = None,
                  thermal_options: Mapping[str, Any] | None = None) -> CoupledResult:
    """Collective: the thermal solution (steady, or transient when case.time is given),
    then static elasticity with its thermal strain (see the module docstring).

    on_progress gets the thermal progress, then the structural one (phase
    'static_structural'); on_step(k, t, T) is passed to the transient thermal solve, and
    thermal_options (on_step_state, start: checkpoint and resume) to `solve_thermal`.
    """
    thermal_part = _has_thermal_part(case)
    if not thermal_part and not any(isinstance(ld, TemperatureFieldLoad) for ld in case.loads):
        raise WeldSimError("boundary_conditions: a coupled thermo-structural analysis needs thermal "
                           "boundary conditions (temperature, heat_flux, convection, "
                           "weld_interface_heating), a heat_source or a temperature_field load")
    t_order = case.element_order or 1
    problem = ElasticityProblem(fmesh, comm, case, materials, temperature_degree=t_order)
    try:
        if not thermal_part:
            final = problem.solve(None, on_progress)
            history = [(0, 0.0, final.metrics.max_von_mises_Pa)]
            return _result(final, None, history, [final])
        transient = case.time is not None
        thermal_case = case.model_copy(update={
            "analysis": "thermal_transient" if transient else "thermal_steady", "element_order": t_order})
        every = case.time.checkpoint_every if transient else 0
        snapshots: list[tuple[int, float, ElasticityResult]] = []

        def step(k: int, t: float, T: Any) -> None:
            if on_step is not None:
                on_step(k, t, T)
            if every and k % every == 0:
                snapshots.append((k, t, problem.solve(T)))

        thermal = solve_thermal(fmesh, comm, thermal_case, materials, on_progress=on_progress,
                                on_step=step, **dict(thermal_options or {}))
        n = len(thermal.times_s) - 1
        if snapshots and snapshots[-1][0] == n:      # the last step was a checkpoint step
            final = snapshots[-1][2]
        else:
            final = problem.solve(thermal.temperature, on_progress)
            snapshots.append((n, float(thermal.times_s[-1]), final))
        history = [(k, t, r.metrics.max_von_mises_Pa) for k, t, r in snapshots]
        return _result(final, thermal, history, [r for _, _, r in snapshots])
    finally:
        problem.destroy()


def _result(final: ElasticityResult, thermal: ThermalResult | None, history: list,
            results: list[ElasticityResult]) -> CoupledResult:
    """Maxima over the evaluated times per volume, and the metrics from them."""
    peaks = {v: max(r.max_von_mises_by_volume_Pa[v] for r in results) for v in final.max_von_mises_by_volume_Pa}
    metrics = phys.structural_metrics(peaks, final.yield_by_volume_Pa,
                                      max(r.max_displacement_m for r in results))
    return CoupledResult(final, thermal, history, peaks, metrics)
