"""Runs a prepared case on the scipy backend (one process): solve, checkpoint, write fields
and metrics — `backends/fenicsx/runner.py` without MPI, with the same metrics, progress
rows, checkpoint layout and resume.

Checkpoints of a transient temperature are in field_order's rank-independent global
order: dofs keyed (input node, −1) for vertices and (min, max) input nodes for P2 edges,
sorted lexicographically (the mesh is read in file order, so the input index is the point
index), then energy_in_J, then the peak temperature of each volume group (mesh group order).
A checkpoint of one backend therefore resumes on the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import SolverError, WeldSimError
from ..run_steps import checkpoint_step, thermal_metric_values
from .fe import Space
from .output import SolvedFields, probe_values, write_fields

THERMAL = ("thermal_steady", "thermal_transient")
STRUCTURAL = ("static_structural", "coupled_thermo_structural")
DYNAMICS = ("modal", "harmonic")


class UnsupportedAnalysisError(WeldSimError):
    """An analysis this backend does not (yet) solve."""


def check_finite(array: np.ndarray, what: str, step: int, t: float) -> None:
    if not np.isfinite(array).all():
        raise SolverError(f"the {what} became NaN or infinite at step {step} (t = {t:g} s): check "
                          "material properties and boundary values, or reduce time.dt_s")


class ThermalCheckpoints:
    """Checkpoint writer/reader for a transient temperature (global key order)."""

    def __init__(self, ctx: Any, space: Space):
        self.ctx, self.space = ctx, space
        keys = space.dof_keys
        self.perm = np.lexsort((keys[:, 1], keys[:, 0]))   # global position -> our dof
        self.volumes = [n for n, (d, _) in ctx.mesh.groups.items() if d == 3]
        self.size = space.n_dofs
        self.n_values = self.size + 1 + len(self.volumes)
        self.layout = (f"temperature[{self.size}] in input-node key order (field_order), "
                       f"energy_in_J, peak_K[{', '.join(self.volumes)}]")

    def start_state(self) -> Any:
        from ...checkpoint import find_resume_checkpoint
        from .thermal import ThermalStepState

        ctx = self.ctx
        found = find_resume_checkpoint(ctx.paths.root, ctx.case_hash, ctx.mesh_hash)
        if found is None:
            ctx.log.info("no checkpoint to resume from: starting at t = 0")
            return None
        ckpt = found[1]
        if len(ckpt.values) != self.n_values:
            raise WeldSimError(f"the checkpoint holds {len(ckpt.values)} values, this run needs "
                               f"{self.n_values}: it was written for another mesh or element order")
        values = np.empty(self.size)
        values[self.perm] = np.asarray(ckpt.values[: self.size], dtype=float)
        ctx.log.info("resuming from step %d (t = %g s)", ckpt.step, ckpt.t)
        return ThermalStepState(ckpt.step, ckpt.t, values, float(ckpt.values[self.size]),
                                np.asarray(ckpt.values[self.size + 1:], dtype=float), tuple(self.volumes))

    def save(self, writer: Any, state: Any) -> None:
        row = np.concatenate([np.asarray(state.values)[self.perm], [state.energy_in_J], state.peaks_K])
        writer.checkpoint(state.step, state.t, self.ctx.case.time.dt_s, row)


class _Ctx:
    """ctx plus the mesh (MeshData) the checkpoints need."""

    def __init__(self, ctx: Any, mesh: Any):
        self._ctx, self.mesh = ctx, mesh

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def _transient_hooks(ctx: Any, space: Space) -> tuple[Any, dict]:
    checkpoints = ThermalCheckpoints(ctx, space)
    writer = ctx.open_writer(n_values=checkpoints.n_values, field_names=("temperature",),
                             field_layout=checkpoints.layout)
    start = checkpoints.start_state() if ctx.resume else None
    on_state = checkpoint_step(ctx, checkpoints, writer,
                               lambda T, step, t: check_finite(T, "temperature", step, t))
    return writer, {"on_step_state": on_state, "start": start}


def _thermal(ctx: Any, mesh: Any) -> tuple[Any, Any]:
    from .thermal import solve_thermal

    case = ctx.case
    if case.analysis != "thermal_transient":
        writer = ctx.open_writer()
        result = solve_thermal(mesh, case, ctx.materials, on_progress=writer.progress)
        check_finite(result.temperature, "temperature", 1, 0.0)
        return result, writer
    space = Space(mesh.points, mesh.cells, case.effective_element_order)
    writer, hooks = _transient_hooks(ctx, space)
    return solve_thermal(mesh, case, ctx.materials, on_progress=writer.progress, space=space, **hooks), writer


def _structural(ctx: Any, mesh: Any) -> tuple[SolvedFields, dict, Any]:
    from .coupled import solve_coupled
    from .elasticity import solve_elasticity

    case = ctx.case
    thermal = None
    if case.analysis == "static_structural":
        writer = ctx.open_writer()
        result = solve_elasticity(mesh, case, ctx.materials, on_progress=writer.progress)
        structural, metrics = result, result.metrics
    else:
        if case.time is None:
            writer = ctx.open_writer()
            result = solve_coupled(mesh, case, ctx.materials, on_progress=writer.progress)
        else:
            space = Space(mesh.points, mesh.cells, case.element_order or 1)
            writer, hooks = _transient_hooks(ctx, space)
            result = solve_coupled(mesh, case, ctx.materials, on_progress=writer.progress, thermal_options=hooks)
        structural, thermal, metrics = result.structural, result.thermal, result.metrics
    t = 0.0 if thermal is None else float(thermal.times_s[-1])
    check_finite(structural.displacement, "displacement", 1, t)
    for warning in metrics.warnings:
        ctx.log.warning("%s", warning)
    values = dict(metrics.as_metrics())
    if thermal is not None:
        thermal_metrics = thermal.metrics(ctx.materials, transient=case.time is not None)
        for warning in thermal_metrics.warnings:
            ctx.log.warning("%s", warning)
        values.update(thermal_metrics.as_metrics())
    fields = SolvedFields(mesh.points, mesh.cells,
                          temperature=None if thermal is None else (thermal.space, thermal.temperature),
                          displacement=(structural.space, structural.displacement),
                          von_mises_dg0=structural.von_mises_dg0, stress=structural.stress_at, t=t)
    return fields, values, writer


def _one_d_estimate(ctx: Any) -> dict[str, float]:
    """The 1-D Webster working frequency of a parametric horn, reported beside the 3-D one."""
    from ..preview import HORN_KINDS, preview_case

    if getattr(ctx.case.geometry, "kind", None) not in HORN_KINDS:
        return {}
    estimate = preview_case(ctx.case, ctx.materials["horn"])
    ctx.log.info("1-D estimate of the working frequency: %.1f Hz (%s)", estimate.f_working_Hz, estimate.method)
    return {"f_1d_estimate_Hz": estimate.f_working_Hz}


def run_scipy(ctx: Any) -> dict[str, Any]:
    """Solve ctx.case on one process; write fields and return the metrics (name -> Metric)."""
    from ...mesh import read_mesh_dir
    from ...results import metric

    if ctx.comm.size != 1:
        raise WeldSimError(f"solver.ranks: the scipy backend runs on one process, not {ctx.comm.size}; "
                           "set solver.ranks = 1 or use the fenicsx backend")
    analysis = ctx.case.analysis
    if analysis not in THERMAL + STRUCTURAL + DYNAMICS:
        raise UnsupportedAnalysisError(
            f"analysis: '{analysis}' is not solved by the scipy backend (thermal_steady, "
            "thermal_transient, static_structural, coupled_thermo_structural, modal, harmonic are)")
    mesh = read_mesh_dir(ctx.paths.mesh_dir)
    ctx = _Ctx(ctx, mesh)
    if analysis in THERMAL:
        result, writer = _thermal(ctx, mesh)
        fields = SolvedFields(mesh.points, mesh.cells, temperature=(result.space, result.temperature),
                              t=float(result.times_s[-1]))
        values = thermal_metric_values(result, ctx, analysis)
    elif analysis == "modal":
        from .dynamics_runner import run_modal

        fields, values, writer = run_modal(ctx, mesh)
    elif analysis == "harmonic":
        from .dynamics_runner import run_harmonic

        fields, values, writer = run_harmonic(ctx, mesh)
    else:
        fields, values, writer = _structural(ctx, mesh)
    if analysis in DYNAMICS:
        values.update(_one_d_estimate(ctx))
    writer.progress(0, fields.t, 100.0, "output", "writing fields", force=True)
    write_fields(fields, ctx.paths.fields_xdmf, ctx.paths.fields_pvd)
    values.update(probe_values(ctx.case, fields))
    values.update({"n_cells": float(mesh.n_cells), "ranks": 1.0})
    return {name: metric(name, v["value"] if isinstance(v, dict) else v) for name, v in values.items()}
