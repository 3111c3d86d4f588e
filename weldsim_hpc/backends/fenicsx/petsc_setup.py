"""Applying a case's `solver.petsc_options` to a KSP (collective).

The options were allow-listed when the case was validated (`weldsim_hpc.petsc_options`:
types and tolerances only, nothing that writes files). They are set under a prefix of
their own and removed again afterwards, so one solver's options never leak into another's.
"""

from __future__ import annotations

from typing import Any, Mapping


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def configure_ksp(ksp: Any, options: Mapping[str, Any], prefix: str) -> None:
    """Apply `options` (keys without the leading '-') over the KSP's current settings."""
    if not options:
        return
    from petsc4py import PETSc

    db = PETSc.Options()
    ksp.setOptionsPrefix(prefix)
    for key, value in options.items():
        db.setValue(prefix + key, _text(value))
    try:
        ksp.setFromOptions()
    finally:
        for key in options:
            db.delValue(prefix + key)
