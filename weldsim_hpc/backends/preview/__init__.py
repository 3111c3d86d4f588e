"""The preview backend: closed-form / 1-D Webster estimates of a horn, no mesh, no MPI.

Public API::

    preview_case(case, material) -> PreviewResult     every field a "1-D estimate" (BASIS)
    PreviewResult.as_metrics() -> {name: {"value", "unit"}}
    horn_profile(horn) -> physics.webster.AreaProfile   A(z) of a parametric horn as built
    NEW_METRIC_UNITS                                   names not (yet) in results.METRICS

Needs numpy and scipy only.
"""

from .estimate import BASIS, HORN_KINDS, NEW_METRIC_UNITS, PreviewResult, horn_profile, preview_case

__all__ = ["BASIS", "HORN_KINDS", "NEW_METRIC_UNITS", "PreviewResult", "horn_profile", "preview_case"]
