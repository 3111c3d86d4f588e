"""Static structural and coupled thermo-structural runs on the fenicsx backend.

Called by `runner.run_fenicsx` for the non-thermal analyses. A coupled run with a
transient thermal part checkpoints its temperature like a thermal run; after a resume
the stress maximum over time covers the steps solved since the resume (the stresses of
the interrupted attempt are not stored).
"""

from __future__ import annotations

from typing import Any

from ..run_steps import checkpoint_step
from .output import SolvedFields

STRUCTURAL = ("static_structural", "coupled_thermo_structural")


def _fields(structural: Any, thermal: Any, comm: Any) -> SolvedFields:
    return SolvedFields(
        temperature=None if thermal is None else thermal.temperature,
        temperature_p1=None if thermal is None else thermal.temperature_p1,
        displacement=structural.displacement, displacement_p1=structural.displacement_p1,
        von_mises_dg0=structural.von_mises_dg0,
        stress=lambda points: structural.stress_at(points, comm),
        t=0.0 if thermal is None else float(thermal.times_s[-1]))


def run_structural(ctx: Any, fmesh: Any, thermal_runner: Any) -> tuple[SolvedFields, dict, Any]:
    """Collective: solve a static or coupled case; return (fields, metric values, writer)."""
    from .elasticity import solve_elasticity

    case, comm = ctx.case, ctx.comm
    if case.analysis not in STRUCTURAL:
        from .runner import UnsupportedAnalysisError

        raise UnsupportedAnalysisError(
            f"analysis: '{case.analysis}' is not solved by the fenicsx backend yet "
            "(thermal_steady, thermal_transient, static_structural, coupled_thermo_structural are)")
    if case.analysis == "static_structural":
        writer = ctx.open_writer()
        result = solve_elasticity(fmesh, comm, case, ctx.materials, on_progress=writer.progress)
        metrics = result.metrics
        fields = _fields(result, None, comm)
    else:
        result, writer = _coupled(ctx, fmesh)
        metrics = result.metrics
        fields = _fields(result.structural, result.thermal, comm)
        if result.thermal is not None:
            thermal_metrics = result.thermal.metrics(ctx.materials, transient=case.time is not None)
            for warning in thermal_metrics.warnings:
                ctx.log.warning("%s", warning)
    from .runner import check_finite

    check_finite(comm, fields.displacement.x.array, "displacement", 1, fields.t)
    for warning in metrics.warnings:
        ctx.log.warning("%s", warning)
    values = dict(metrics.as_metrics())
    if case.analysis == "coupled_thermo_structural" and result.thermal is not None:
        values.update(result.thermal.metrics(ctx.materials, transient=case.time is not None).as_metrics())
    return fields, values, writer


def _coupled(ctx: Any, fmesh: Any) -> tuple[Any, Any]:
    """The coupled solve, with the thermal checkpoints of a transient thermal part."""
    from .coupled import solve_coupled
    from .runner import ThermalCheckpoints, temperature_check

    case, comm = ctx.case, ctx.comm
    if case.time is None:
        writer = ctx.open_writer()
        return solve_coupled(fmesh, comm, case, ctx.materials, on_progress=writer.progress), writer
    checkpoints = ThermalCheckpoints(ctx, fmesh, order=case.element_order or 1)
    writer = ctx.open_writer(n_values=checkpoints.n_values, field_names=("temperature",),
                             field_layout=checkpoints.layout)
    start = checkpoints.start_state() if ctx.resume else None
    on_state = checkpoint_step(ctx, checkpoints, writer, temperature_check(comm))
    result = solve_coupled(fmesh, comm, case, ctx.materials, on_progress=writer.progress,
                           thermal_options={"on_step_state": on_state, "start": start})
    return result, writer
