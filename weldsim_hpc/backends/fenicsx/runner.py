"""Runs a prepared case on the fenicsx backend: solve, checkpoint, write fields and metrics.

Called collectively by `weldsim_hpc.run` on every rank. Transient thermal runs (also the
thermal half of a coupled transient) checkpoint the temperature every
`time.checkpoint_every` steps in a rank-independent order (`field_order`), together with
the cumulative heat input and the running peak temperature of each volume, so a resumed
attempt on any number of ranks ends where an uninterrupted run would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import SolverError, WeldSimError
from ..run_steps import checkpoint_step, thermal_metric_values
from . import compat
from .field_order import GlobalOrder
from .output import SolvedFields, probe_values, write_fields

THERMAL = ("thermal_steady", "thermal_transient")


class UnsupportedAnalysisError(WeldSimError):
    """An analysis this backend does not (yet) solve."""


def _broadcast_result(comm: Any, fn: Any) -> Any:
    """Run fn() on rank 0; return its result everywhere, or raise its WeldSimError everywhere."""
    payload = None
    if comm.rank == 0:
        try:
            payload = ("ok", fn())
        except WeldSimError as exc:
            payload = ("error", exc)
    kind, value = comm.bcast(payload, root=0)
    if kind == "error":
        raise value
    return value


def check_finite(comm: Any, array: np.ndarray, what: str, step: int, t: float) -> None:
    """Collective NaN/inf check of a field; raises SolverError on every rank."""
    from mpi4py import MPI

    if not comm.allreduce(bool(np.isfinite(array).all()), op=MPI.LAND):
        raise SolverError(f"the {what} became NaN or infinite at step {step} (t = {t:g} s): check "
                          "material properties and boundary values, or reduce time.dt_s")


def temperature_check(comm: Any) -> Any:
    """check_finite for a temperature Function, as `run_steps.checkpoint_step` wants it."""
    return lambda T, step, t: check_finite(comm, T.x.array, "temperature", step, t)


class ThermalCheckpoints:
    """Checkpoint writer/reader for the temperature of a transient run."""

    def __init__(self, ctx: Any, fmesh: Any, order: int | None = None):
        """order: the temperature's element order (default: the case's)."""
        self.ctx, self.comm = ctx, ctx.comm
        order = order or ctx.case.effective_element_order
        self.order = GlobalOrder(compat.lagrange_space(fmesh.mesh, order), ctx.comm)
        self.volumes = [n for n, (d, _) in fmesh.groups.items() if d == 3]
        self.n_values = self.order.size + 1 + len(self.volumes)
        self.layout = (f"temperature[{self.order.size}] in input-node key order (field_order), "
                       f"energy_in_J, peak_K[{', '.join(self.volumes)}]")

    def start_state(self) -> Any:
        """The state to resume from (None: start at t = 0); collective."""
        from ...checkpoint import find_resume_checkpoint
        from .thermal import ThermalStepState

        ctx = self.ctx

        def read() -> Any:
            found = find_resume_checkpoint(ctx.paths.root, ctx.case_hash, ctx.mesh_hash)
            if found is None:
                return None
            ckpt = found[1]
            if len(ckpt.values) != self.n_values:
                raise WeldSimError(f"the checkpoint holds {len(ckpt.values)} values, this run needs "
                                   f"{self.n_values}: it was written for another mesh or element order")
            return ckpt

        ckpt = _broadcast_result(self.comm, read)
        if ckpt is None:
            ctx.log.info("no checkpoint to resume from: starting at t = 0")
            return None
        size = self.order.size
        local = self.order.scatter(ckpt.values[:size] if self.comm.rank == 0 else None)
        ctx.log.info("resuming from step %d (t = %g s)", ckpt.step, ckpt.t)
        return ThermalStepState(ckpt.step, ckpt.t, local, float(ckpt.values[size]),
                                np.asarray(ckpt.values[size + 1:], dtype=float), tuple(self.volumes))

    def save(self, writer: Any, state: Any) -> None:
        """Collective: gather the state in global order; rank 0 appends a checkpoint."""
        values = self.order.gather(state.values)
        if self.comm.rank == 0:
            row = np.concatenate([values, [state.energy_in_J], state.peaks_K])
            writer.checkpoint(state.step, state.t, self.ctx.case.time.dt_s, row)


def _thermal(ctx: Any, fmesh: Any, *, analysis_case: Any = None) -> tuple[Any, Any]:
    """Solve the thermal analysis (with checkpoints when transient); return (result, writer)."""
    from .thermal import solve_thermal

    case = analysis_case or ctx.case
    comm = ctx.comm
    transient = case.analysis == "thermal_transient"
    if not transient:
        writer = ctx.open_writer()
        result = solve_thermal(fmesh, comm, case, ctx.materials, on_progress=writer.progress)
        check_finite(comm, result.temperature.x.array, "temperature", 1, 0.0)
        return result, writer
    checkpoints = ThermalCheckpoints(ctx, fmesh)
    writer = ctx.open_writer(n_values=checkpoints.n_values, field_names=("temperature",),
                             field_layout=checkpoints.layout)
    start = checkpoints.start_state() if ctx.resume else None
    on_state = checkpoint_step(ctx, checkpoints, writer, temperature_check(comm))
    result = solve_thermal(fmesh, comm, case, ctx.materials, on_progress=writer.progress,
                           on_step_state=on_state, start=start)
    return result, writer


def _one_d_estimate(ctx: Any) -> dict[str, float]:
    """The 1-D Webster working frequency of a parametric horn, reported beside the 3-D one."""
    from ..preview import HORN_KINDS, preview_case

    if getattr(ctx.case.geometry, "kind", None) not in HORN_KINDS:
        return {}
    estimate = preview_case(ctx.case, ctx.materials["horn"])
    ctx.log.info("1-D estimate of the working frequency: %.1f Hz (%s)", estimate.f_working_Hz, estimate.method)
    return {"f_1d_estimate_Hz": estimate.f_working_Hz}


def _mesh_metrics(fmesh: Any, comm: Any) -> dict[str, float]:
    tdim = fmesh.mesh.topology.dim
    return {"n_cells": float(comm.allreduce(fmesh.mesh.topology.index_map(tdim).size_local)),
            "ranks": float(comm.size)}


def run_fenicsx(ctx: Any) -> dict[str, Any]:
    """Collective: solve ctx.case; write fields (all ranks) and return the metrics."""
    from ...results import metric
    from .mesh_io import read_mesh

    fmesh = read_mesh(ctx.paths.mesh_dir, ctx.comm)
    analysis = ctx.case.analysis
    if analysis in THERMAL:
        result, writer = _thermal(ctx, fmesh)
        fields = SolvedFields(temperature=result.temperature, temperature_p1=result.temperature_p1,
                              t=float(result.times_s[-1]))
        values = thermal_metric_values(result, ctx, analysis)
    elif analysis == "modal":
        from .dynamics_runner import run_modal

        fields, values, writer = run_modal(ctx, fmesh)
    elif analysis == "harmonic":
        from .harmonic_runner import run_harmonic

        fields, values, writer = run_harmonic(ctx, fmesh)
    else:
        from .structural_runner import run_structural

        fields, values, writer = run_structural(ctx, fmesh, _thermal)
    if analysis in ("modal", "harmonic"):
        values.update(_one_d_estimate(ctx))
    writer.progress(0, fields.t, 100.0, "output", "writing fields", force=True)
    write_fields(fields, ctx.paths.fields_xdmf, ctx.paths.fields_pvd)
    values.update(probe_values(ctx.case, fields, ctx.comm))
    values.update(_mesh_metrics(fmesh, ctx.comm))
    return {name: metric(name, v["value"] if isinstance(v, dict) else v) for name, v in values.items()}
