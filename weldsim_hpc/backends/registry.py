"""Which solver backends exist, which analyses each supports, and which one a case runs on.

Why a registry: "auto" must pick a backend that is installed AND supports the analysis,
and an explicit request must never be switched silently (a case asking for fenicsx on a
machine without dolfinx is an error the engineer has to see). Availability is decided with
``importlib.util.find_spec`` — nothing heavy is imported, so the CLI and the portal can
ask without loading dolfinx or MPI.

Only real backends are registered: fenicsx (MPI), scipy (one node, numpy/scipy/pyamg;
"auto" picks it where dolfinx is missing) and preview. The 1-D `preview` backend runs only when asked
for by name: "auto" never answers a 3-D case with an estimate.

    select_backend("auto", "thermal_transient")   # 'fenicsx' where dolfinx is installed
    select_backend("preview", "static_structural")  # BackendError: preview does not support it
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..errors import WeldSimError

#: every backend name a case may request (CaseSpec solver.backend), in "auto" preference order
KNOWN_BACKENDS = ("fenicsx", "scipy", "preview")


class BackendError(WeldSimError):
    """No backend can run the case as requested."""


@dataclass(frozen=True)
class BackendInfo:
    """A registered backend: the analyses it solves, whether it runs under MPI (many
    ranks), and the top-level modules it needs (checked with find_spec, never imported)."""

    name: str
    analyses: tuple[str, ...]
    parallel: bool
    requires: tuple[str, ...]
    install_hint: str
    auto: bool = True  # may "auto" pick it? (not the 1-D preview: a 3-D case must not get an estimate)


BACKENDS: dict[str, BackendInfo] = {
    "fenicsx": BackendInfo(
        name="fenicsx",
        analyses=("thermal_steady", "thermal_transient", "static_structural", "coupled_thermo_structural",
                  "modal", "harmonic"),
        parallel=True,
        requires=("dolfinx", "petsc4py", "mpi4py"),
        install_hint="install Debian's python3-dolfinx stack and use the project venv (.venv/bin/python)",
    ),
    "scipy": BackendInfo(
        name="scipy",
        analyses=("thermal_steady", "thermal_transient", "static_structural", "coupled_thermo_structural",
                  "modal", "harmonic"),
        parallel=False,
        requires=("numpy", "scipy", "pyamg"),
        install_hint="pip install numpy scipy pyamg (core weldsim_hpc dependencies)",
    ),
    "preview": BackendInfo(
        name="preview",
        analyses=("modal", "harmonic"),
        parallel=False,
        requires=("numpy", "scipy"),
        install_hint="numpy and scipy are core weldsim_hpc dependencies",
        auto=False,
    ),
}


def _module_found(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(name: str) -> list[str]:
    """The modules backend `name` needs that this Python cannot find."""
    return [m for m in BACKENDS[name].requires if not _module_found(m)]


def available_backends() -> list[str]:
    """Registered backends whose modules are installed here, in preference order."""
    return [name for name in KNOWN_BACKENDS if name in BACKENDS and not missing_modules(name)]


def _supports(name: str) -> str:
    return f"{name}: {', '.join(BACKENDS[name].analyses)}"


def select_backend(requested: str, analysis: str) -> str:
    """The backend that runs `analysis`: `requested` itself, or for "auto" the first
    available one supporting it. Raises BackendError naming what is missing and what to do."""
    if requested == "auto":
        available = available_backends()
        for name in available:
            if BACKENDS[name].auto and analysis in BACKENDS[name].analyses:
                return name
        lines = [_supports(n) for n in available if BACKENDS[n].auto] or ["none is installed"]
        unavailable = [f"{n} (needs {', '.join(missing_modules(n))})" for n in BACKENDS if n not in available]
        extra = f"; not available here: {', '.join(unavailable)}" if unavailable else ""
        raise BackendError(f"no available backend supports analysis '{analysis}' "
                           f"(available: {'; '.join(lines)}{extra})")
    if requested not in KNOWN_BACKENDS:
        raise BackendError(f"unknown backend '{requested}' (valid: auto, {', '.join(KNOWN_BACKENDS)})")
    if requested not in BACKENDS:
        raise BackendError(f"backend '{requested}' is not implemented yet "
                           f"(implemented: {', '.join(BACKENDS)}; or use backend = \"auto\")")
    missing = missing_modules(requested)
    if missing:
        raise BackendError(f"backend '{requested}' needs {', '.join(missing)}, which this Python cannot import: "
                           f"{BACKENDS[requested].install_hint}, or choose another backend")
    if analysis not in BACKENDS[requested].analyses:
        raise BackendError(f"backend '{requested}' does not support analysis '{analysis}' "
                           f"(it supports: {', '.join(BACKENDS[requested].analyses)})")
    return requested
