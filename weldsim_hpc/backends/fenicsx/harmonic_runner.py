"""Harmonic runs on the fenicsx backend: free-free working frequency, then the response.

Called by `runner.run_fenicsx` for `analysis = "harmonic"`::

    fields, values, writer = run_harmonic(ctx, fmesh)

1. The free-free modal run (the case with its boundary conditions removed, `solve_modal`)
   gives f_working_Hz: the longitudinal mode nearest solver.target_frequency_Hz.
2. `solve_harmonic` at that frequency (base excitation of input_face, modal superposition).

Outputs: the returned SolvedFields — Re û at f_working scaled to
harmonic.output_amplitude_0pk_m (vector, full order + P1, named "displacement"), the
cellwise peak von Mises over the cycle ("von_mises", Pa) and σ(Re û) for stress probes —
which the caller writes with `output.write_fields`; results/curves.json (rank 0, written
here): the frequency response over harmonic.frequency_range_Hz (see
`harmonic.HarmonicCurves.as_json`) with f_working_Hz, the fixed-input modes used and the
cut-off. Metrics: gain, uniformity, input/output amplitudes, max_von_mises_Pa,
fatigue_safety_factor, von_mises_over_yield, max_displacement_m, n_dofs, and from the
free-free run f_working_Hz, tuning_error_Hz, mode_separation_Hz; names not (yet) in
`results.METRICS` (input_force_0pk_N, harmonic_modes_used) are left out with a warning.
"""

from __future__ import annotations

from typing import Any

from ...errors import WeldSimError
from .output import SolvedFields

CURVES_FILE = "curves.json"


def working_frequency(ctx: Any, fmesh: Any, writer: Any) -> tuple[float, Any]:
    """Collective: (f_working_Hz, ModalSummary) of the free-free case."""
    from .modal import solve_modal

    free = ctx.case.model_copy(update={"boundary_conditions": []})
    result = solve_modal(fmesh, ctx.comm, free, ctx.materials, on_progress=writer.progress)
    summary = result.summary
    for warning in summary.warnings:
        ctx.log.warning("free-free modal run: %s", warning)
    if summary.f_working_Hz is None:
        raise WeldSimError(f"solver.modes_wanted: no longitudinal mode among the {len(summary.modes)} "
                           f"free-free modes near {summary.target_Hz:g} Hz, so there is no working "
                           "frequency to report the harmonic response at; raise solver.modes_wanted")
    return float(summary.f_working_Hz), summary


def registered(values: dict[str, float], log: Any) -> dict[str, float]:
    """The values whose names the metric registry knows; one warning names the others."""
    from ...results import MetricError, metric_spec

    known, unknown = {}, []
    for name, value in values.items():
        try:
            metric_spec(name)
            known[name] = value
        except MetricError:
            unknown.append(name)
    if unknown:
        log.warning("harmonic metrics not in the registry yet, left out: %s", ", ".join(sorted(unknown)))
    return known


def curves_document(result: Any) -> dict:
    """What results/curves.json holds (JSON-ready)."""
    return {**result.curves.as_json(), "f_working_Hz": result.f_working_Hz,
            "gain_at_f_working": result.gain,
            "fixed_input_modes_Hz": [float(f) for f in result.mode_frequencies_Hz],
            "mode_cutoff_Hz": result.cutoff_Hz}


def run_harmonic(ctx: Any, fmesh: Any) -> tuple[SolvedFields, dict, Any]:
    """Collective: solve ctx.case (harmonic); write curves.json; return (fields, metric
    values, writer) like `structural_runner.run_structural`."""
    from ...run_paths import write_json_atomic
    from .harmonic import solve_harmonic

    comm = ctx.comm
    writer = ctx.open_writer()
    f_working, summary = working_frequency(ctx, fmesh, writer)
    ctx.log.info("free-free working mode %d at %.2f Hz", summary.working.index, f_working)
    result = solve_harmonic(fmesh, comm, ctx.case, ctx.materials, f_working_Hz=f_working,
                            on_progress=writer.progress)
    for warning in result.warnings:
        ctx.log.warning("%s", warning)
    ctx.log.info("harmonic: gain %.5f, uniformity %.4f, %d fixed-input modes up to %.0f Hz",
                 result.gain, result.uniformity, len(result.mode_frequencies_Hz), result.cutoff_Hz)
    if comm.rank == 0:
        ctx.paths.results_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(ctx.paths.results_dir / CURVES_FILE, curves_document(result))
    comm.barrier()
    values = result.metrics()
    values.update({"tuning_error_Hz": summary.tuning_error_Hz,
                   "input_force_0pk_N": result.input_force_0pk_N,
                   "harmonic_modes_used": float(len(result.mode_frequencies_Hz))})
    if summary.separation_Hz is not None:
        values["mode_separation_Hz"] = summary.separation_Hz
    fields = SolvedFields(displacement=result.displacement, displacement_p1=result.displacement_p1,
                          von_mises_dg0=result.von_mises_dg0,
                          stress=lambda points: result.stress_at(points, comm))
    return fields, registered(values, ctx.log), writer
