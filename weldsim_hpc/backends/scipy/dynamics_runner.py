"""Modal and harmonic runs on the scipy backend — the outputs and metrics of
`backends/fenicsx/dynamics_runner.py` and `harmonic_runner.py`, on one process.

Called by `runner.run_scipy`::

    fields, values, writer = run_modal(ctx, mesh)       # analysis = "modal"
    fields, values, writer = run_harmonic(ctx, mesh)    # analysis = "harmonic"

modal: results/fields.xdmf (+ .h5) holds the P1 mode shapes as ONE time series named
"displacement", one step per mode, the time value being the mode number k (1, 2, … in
ascending frequency); results/fields.pvd lists one full-order piece per mode
(fields_<k>.vtu, timestep k); results/modes.json is the fenicsx document
(`modes_document`). The returned SolvedFields is empty (the caller's write_fields writes
nothing over these files; mode shapes have no probe values).

harmonic: the free-free modal run (boundary conditions removed) gives f_working_Hz, then
`solve_harmonic` there; the returned SolvedFields carries Re û (scaled), the cellwise
peak von Mises over the cycle and σ(Re û) for stress probes; results/curves.json as
fenicsx (`curves_document`). Metrics and their registry filtering are the fenicsx
runners' (the helpers are imported from there: they do not import dolfinx).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import WeldSimError
from .output import _VTK_FROM_BASIX, SolvedFields

CURVES_FILE = "curves.json"


def write_modes(result: Any, xdmf_path: Path, pvd_path: Path) -> None:
    """The mode shapes, one output step per mode (time value = mode number)."""
    import meshio

    if not len(result.shapes):
        return
    V = result.space
    xdmf_path, pvd_path = Path(xdmf_path), Path(pvd_path)
    with contextlib.chdir(xdmf_path.parent), meshio.xdmf.TimeSeriesWriter(xdmf_path.name) as writer:
        writer.write_points_cells(V.points, [("tetra", V.cells)])
        for k, shape in enumerate(result.shapes, start=1):
            writer.write_data(float(k), point_data={"displacement": np.nan_to_num(V.p1_values(shape))})
    conn, cell_type = (V.cell_dofs[:, [0, 1, 2, 3] + _VTK_FROM_BASIX], "tetra10") if V.order == 2 \
        else (V.cell_dofs, "tetra")
    rows = []
    for k, shape in enumerate(result.shapes, start=1):
        piece = pvd_path.with_name(f"{pvd_path.stem}_{k:06d}.vtu")
        meshio.write(str(piece), meshio.Mesh(V.dof_coords, [(cell_type, conn)],
                                             point_data={"displacement": shape}), file_format="vtu")
        rows.append(f'    <DataSet timestep="{float(k)!r}" part="0" file="{piece.name}"/>\n')
    pvd_path.write_text('<?xml version="1.0"?>\n<VTKFile type="Collection" version="0.1">\n  <Collection>\n'
                        + "".join(rows) + "  </Collection>\n</VTKFile>\n")


def run_modal(ctx: Any, mesh: Any) -> tuple[SolvedFields, dict, Any]:
    """Solve ctx.case (modal); write shapes and modes.json; return (empty fields, metric
    values, writer) like the fenicsx run_modal."""
    from ..fenicsx.dynamics_runner import modes_document, registered_metrics
    from .modal import solve_modal

    writer = ctx.open_writer()
    result = solve_modal(mesh, ctx.case, ctx.materials, on_progress=writer.progress)
    for warning in result.summary.warnings:
        ctx.log.warning("%s", warning)
    if result.n_rigid_deflated:
        ctx.log.info("%d rigid-body mode(s) deflated; %d mode(s) found, %d ARPACK operator applications",
                     result.n_rigid_deflated, len(result.shapes), result.iterations)
    writer.progress(0, 0.0, 100.0, "output", "writing mode shapes", force=True)
    results_dir = ctx.paths.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    write_modes(result, ctx.paths.fields_xdmf, ctx.paths.fields_pvd)
    (results_dir / "modes.json").write_text(json.dumps(modes_document(result), indent=2))
    values = dict(result.summary.as_metrics())
    values["n_dofs"] = float(result.n_dofs)
    return SolvedFields(mesh.points, mesh.cells), registered_metrics(values, ctx.log), writer


def working_frequency(ctx: Any, mesh: Any, writer: Any) -> tuple[float, Any]:
    """(f_working_Hz, ModalSummary) of the free-free case."""
    from .modal import solve_modal

    free = ctx.case.model_copy(update={"boundary_conditions": []})
    summary = solve_modal(mesh, free, ctx.materials, on_progress=writer.progress).summary
    for warning in summary.warnings:
        ctx.log.warning("free-free modal run: %s", warning)
    if summary.f_working_Hz is None:
        raise WeldSimError(f"solver.modes_wanted: no longitudinal mode among the {len(summary.modes)} "
                           f"free-free modes near {summary.target_Hz:g} Hz, so there is no working "
                           "frequency to report the harmonic response at; raise solver.modes_wanted")
    return float(summary.f_working_Hz), summary


def run_harmonic(ctx: Any, mesh: Any) -> tuple[SolvedFields, dict, Any]:
    """Solve ctx.case (harmonic); write curves.json; return (fields, metric values, writer)."""
    from ...run_paths import write_json_atomic
    from ..fenicsx.harmonic_runner import curves_document, registered
    from .harmonic import solve_harmonic

    writer = ctx.open_writer()
    f_working, summary = working_frequency(ctx, mesh, writer)
    ctx.log.info("free-free working mode %d at %.2f Hz", summary.working.index, f_working)
    result = solve_harmonic(mesh, ctx.case, ctx.materials, f_working_Hz=f_working, on_progress=writer.progress)
    for warning in result.warnings:
        ctx.log.warning("%s", warning)
    ctx.log.info("harmonic: gain %.5f, uniformity %.4f, %d fixed-input modes up to %.0f Hz",
                 result.gain, result.uniformity, len(result.mode_frequencies_Hz), result.cutoff_Hz)
    ctx.paths.results_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(ctx.paths.results_dir / CURVES_FILE, curves_document(result))
    values = result.metrics()
    values.update({"tuning_error_Hz": summary.tuning_error_Hz, "input_force_0pk_N": result.input_force_0pk_N,
                   "harmonic_modes_used": float(len(result.mode_frequencies_Hz))})
    if summary.separation_Hz is not None:
        values["mode_separation_Hz"] = summary.separation_Hz
    fields = SolvedFields(mesh.points, mesh.cells, displacement=(result.space, result.displacement),
                          von_mises_dg0=result.von_mises_dg0, stress=result.stress_at)
    return fields, registered(values, ctx.log), writer
