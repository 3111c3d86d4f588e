"""Modal runs on the fenicsx backend: solve, write the mode shapes, modes.json and metrics.

Called by `runner.run_fenicsx` for `analysis = "modal"`::

    fields, values, writer = run_modal(ctx, fmesh)

Outputs (written here, collectively, because `output.write_fields` writes one step):

* results/fields.xdmf (+ .h5): the P1 mode shapes as ONE time series named
  "displacement", one step per mode; the XDMF time value is the mode number k (1, 2, …
  in ascending frequency), not the frequency, so degenerate pairs get distinct steps.
  results/modes.json maps k to the frequency and class.
* results/fields.pvd (+ .pvtu/.vtu pieces): the same steps at full order.
* results/modes.json (rank 0): {"target_Hz", "working_mode", "mode_separation_Hz",
  "modes": [{index, frequency_Hz, class, axial/torsional/lateral fractions, bending_share,
  tilt_fraction, working, separation_Hz, near_working}, …]}.

Shapes are mass-normalised (φᵀMφ = 1, m·kg^-½): their scale is arbitrary for a viewer.
The returned SolvedFields is empty, so the caller's `write_fields` writes nothing over
these files and no probe values are produced (a mode shape has no physical amplitude).
Metric names not (yet) in `results.METRICS` are left out with one logged warning.
"""

from __future__ import annotations

import json
from typing import Any

from .output import SolvedFields


def write_modes(result: Any, xdmf_path: Any, pvd_path: Any) -> None:
    """Collective: the mode shapes, one output step per mode (time value = mode number)."""
    from dolfinx import io

    if not result.shapes:
        return
    mesh = result.shapes[0].function_space.mesh
    with io.XDMFFile(mesh.comm, str(xdmf_path), "w") as xdmf:
        xdmf.write_mesh(mesh)
        for k, u1 in enumerate(result.shapes_p1(), start=1):
            xdmf.write_function(u1, float(k))
    with io.VTKFile(mesh.comm, str(pvd_path), "w") as vtk:
        for k, u in enumerate(result.shapes, start=1):
            vtk.write_function(u, float(k))


def modes_document(result: Any) -> dict:
    """What results/modes.json holds (JSON-ready)."""
    from ...physics.modal import modes_table

    s = result.summary
    return {"target_Hz": s.target_Hz,
            "working_mode": None if s.working is None else s.working.index,
            "f_working_Hz": s.f_working_Hz, "mode_separation_Hz": s.separation_Hz,
            "mode_separation_flag": s.separation_flag,
            "xdmf_time_value": "mode number k (1-based, ascending frequency)",
            "normalisation": "mass (phi^T M phi = 1)",
            "rigid_modes_deflated": result.n_rigid_deflated, "modes": modes_table(s)}


def registered_metrics(values: dict[str, float], log: Any) -> dict[str, float]:
    """The values whose names the metric registry knows; one warning lists the others."""
    from ...results import MetricError, metric_spec

    known, unknown = {}, []
    for name, value in values.items():
        try:
            metric_spec(name)
            known[name] = value
        except MetricError:
            unknown.append(name)
    if unknown:
        fields = sorted({n.split(".")[-1] if n.startswith("mode.") else n for n in unknown})
        log.warning("modal metrics not in the registry yet, left out: %s", ", ".join(fields))
    return known


def run_modal(ctx: Any, fmesh: Any) -> tuple[SolvedFields, dict, Any]:
    """Collective: solve ctx.case (modal); write shapes and modes.json; return
    (empty fields, metric values, writer) like `structural_runner.run_structural`."""
    from .modal import solve_modal

    case, comm = ctx.case, ctx.comm
    writer = ctx.open_writer()
    result = solve_modal(fmesh, comm, case, ctx.materials, on_progress=writer.progress)
    for warning in result.summary.warnings:
        ctx.log.warning("%s", warning)
    if result.n_rigid_deflated:
        ctx.log.info("%d rigid-body mode(s) deflated; %d mode(s) found, %d SLEPc iterations",
                     result.n_rigid_deflated, len(result.shapes), result.iterations)
    writer.progress(0, 0.0, 100.0, "output", "writing mode shapes", force=True)
    results_dir = ctx.paths.results_dir
    if comm.rank == 0:
        results_dir.mkdir(parents=True, exist_ok=True)
    comm.barrier()
    write_modes(result, ctx.paths.fields_xdmf, ctx.paths.fields_pvd)
    if comm.rank == 0:
        (results_dir / "modes.json").write_text(json.dumps(modes_document(result), indent=2))
    values = dict(result.summary.as_metrics())
    values["n_dofs"] = float(result.n_dofs)
    return SolvedFields(), registered_metrics(values, ctx.log), writer
