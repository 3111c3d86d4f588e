"""A run on the preview backend: the 1-D estimate as a run's metrics, no mesh, no MPI work.

Every rank computes the estimate (it takes milliseconds); rank 0 writes
results/preview.json with the basis ("1-D estimate"), the method and the notes, so nobody
mistakes these numbers for a 3-D result.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from ...geometry import groups as g
from .estimate import preview_case


def run_preview(ctx: Any) -> dict[str, Any]:
    """Collective-safe (no communication): the metrics of the 1-D estimate."""
    from ...results import metric

    writer = ctx.open_writer()
    writer.progress(0, 0.0, 0.0, "preview", "1-D Webster estimate", force=True)
    result = preview_case(ctx.case, ctx.materials[g.HORN])
    ctx.log.info("%s (%s) of a %s horn", result.basis, result.method, result.geometry_kind)
    for note in result.notes:
        ctx.log.warning("%s", note)
    if ctx.comm.rank == 0:
        summary = {key: value for key, value in asdict(result).items() if not isinstance(value, float)}
        ctx.paths.results_dir.mkdir(exist_ok=True)
        (ctx.paths.results_dir / "preview.json").write_text(json.dumps(summary, indent=2) + "\n")
    writer.progress(1, 0.0, 100.0, "preview", "done", force=True)
    return {name: metric(name, entry["value"]) for name, entry in result.as_metrics().items()}
