"""Backend-neutral pieces of a run, shared by the fenicsx and scipy runners.

Both runners checkpoint transient temperatures the same way and report the same thermal
metrics; keeping those rules here means the two backends cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import RunInterrupted


def checkpoint_step(ctx: Any, checkpoints: Any, writer: Any,
                    check_finite: Callable[[Any, int, float], None]) -> Callable[[Any, Any], None]:
    """The `on_step_state(state, T)` callback of a transient thermal solve.

    After every step: fail on NaN (check_finite(T, step, t), collective), agree on a stop
    signal, checkpoint every `time.checkpoint_every` steps, at the last step and when
    stopping, then end the attempt with RunInterrupted if a stop was agreed.
    """
    every = ctx.case.time.checkpoint_every

    def on_state(state: Any, T: Any) -> None:
        check_finite(T, state.step, state.t)
        stop = ctx.stop.agreed()
        if stop or state.step % every == 0 or state.step == state.n_steps:
            checkpoints.save(writer, state)
        if stop:
            raise RunInterrupted(state.step, state.t)

    return on_state


def thermal_metric_values(result: Any, ctx: Any, analysis: str) -> dict[str, Any]:
    """Metric values of a thermal result ({name: {value, unit}} or numbers); warnings logged."""
    thermal = result.metrics(ctx.materials, transient=analysis == "thermal_transient")
    for warning in thermal.warnings:
        ctx.log.warning("%s", warning)
    values = dict(thermal.as_metrics())
    if analysis == "thermal_transient":
        values["n_time_steps"] = float(steps_reached(ctx.case, float(result.times_s[-1])))
    return values


def steps_reached(case: Any, t_s: float) -> int:
    """Index of time t_s on the case's time grid: the steps of the whole simulation up to
    t_s, also when the last attempt resumed from a checkpoint (it counts its own steps only)."""
    import bisect

    from ..physics.thermal import time_grid

    weld = case.weld is not None and any(bc.type == "weld_interface_heating" for bc in case.boundary_conditions)
    grid = time_grid(case.time.end_s, case.time.dt_s, (case.weld.weld_time_s,) if weld else ())
    return bisect.bisect_left(grid, t_s * (1 - 1e-12))
