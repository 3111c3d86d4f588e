"""Which PETSc options a case may set: solver types and tolerances, nothing that writes.

Why an allow-list: cases arrive from the portal, and PETSc's options database can do far
more than choose a solver — ``-ksp_view ascii:/etc/x``, ``-log_view``, ``-options_file``
and the ``*_monitor``/``*_draw`` families open files, viewers or windows on the compute
nodes. So a case may only name keys from the families below (types, tolerances, iteration
counts), and neither a key nor a text value may mention a file, viewer or monitor.

Keys are written without the leading dash (``ksp_type``, not ``-ksp_type``). Pure: no
petsc4py import; the fenicsx backend passes the checked dict to PETSc.Options.

Example::

    check_petsc_options({"ksp_type": "cg", "pc_type": "hypre", "ksp_rtol": 1e-10})  # ok
    check_petsc_options({"ksp_view": True})  # PetscOptionError naming the key
"""

from __future__ import annotations

import math
import re
from typing import Union

PetscValue = Union[str, int, float, bool]

#: (family shown in error messages, full-match pattern of allowed keys)
ALLOWED_FAMILIES: tuple[tuple[str, str], ...] = (
    ("ksp_type, pc_type", r"(ksp|pc)_type"),
    ("ksp_rtol, ksp_atol, ksp_divtol, ksp_max_it", r"ksp_(rtol|atol|divtol|max_it)"),
    ("ksp_gmres_restart", r"ksp_gmres_restart"),
    ("ksp_norm_type, ksp_initial_guess_nonzero", r"ksp_(norm_type|initial_guess_nonzero)"),
    ("pc_factor_mat_solver_type, pc_factor_mat_ordering_type, pc_factor_shift_type",
     r"pc_factor_(mat_solver_type|mat_ordering_type|shift_type)"),
    ("pc_hypre_type, pc_hypre_boomeramg_<strong_threshold|max_iter|coarsen_type|interp_type|"
     "relax_type_all|agg_nl|tol|max_levels>",
     r"pc_hypre_type|pc_hypre_boomeramg_(strong_threshold|max_iter|coarsen_type|interp_type"
     r"|relax_type_all|agg_nl|tol|max_levels)"),
    ("pc_gamg_<type|threshold|agg_nsmooths|coarse_eq_limit|square_graph|sym_graph>",
     r"pc_gamg_(type|threshold|agg_nsmooths|coarse_eq_limit|square_graph|sym_graph)"),
    ("mg_levels_ksp_<type|max_it>, mg_levels_pc_type, mg_coarse_ksp_type, mg_coarse_pc_type",
     r"mg_levels_ksp_(type|max_it)|mg_levels_pc_type|mg_coarse_(ksp|pc)_type"),
    # ICNTL 1-3 are MUMPS's output streams (Fortran units: they would create fort.<n> files)
    ("mat_mumps_icntl_<4..59>, mat_mumps_cntl_<1..9>", r"mat_mumps_icntl_([4-9]|[1-5][0-9])|mat_mumps_cntl_[1-9]"),
)
_ALLOWED = re.compile("|".join(f"(?:{pattern})" for _, pattern in ALLOWED_FAMILIES))

# anything that names a file, a viewer, a monitor, a log, a drawing or another options source
_FORBIDDEN_KEY = re.compile(r"view|monitor|options_file|options_left|^log_|_log|draw|[:/\\]|\.\.|history|save|dump"
                            r"|output|file|python|malloc|info")
_FORBIDDEN_VALUE = re.compile(r"[:/\\]|\.\.|view|monitor|ascii|binary|hdf5|vtk|draw|file|stdout|stderr|python")
_VALUE_TEXT = re.compile(r"[A-Za-z0-9_.+\-]{1,64}")

FORBIDDEN_MESSAGE = "options that write files or views are not allowed (cases arrive from the portal)"


class PetscOptionError(ValueError):
    """A disallowed PETSc option; `key` is the offending option (without the dash)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


def allowed_families() -> str:
    """The allowed key families, comma-separated, for error messages and docs."""
    return "; ".join(family for family, _ in ALLOWED_FAMILIES)


def key_problem(key: object) -> str | None:
    """Why `key` may not be set (None: it is an allowed type/tolerance option)."""
    if not isinstance(key, str) or not key:
        return "option names must be non-empty text"
    if key.startswith("-"):
        return f"write the option without the leading dash ('{key.lstrip('-')}')"
    if _FORBIDDEN_KEY.search(key.lower()):
        return FORBIDDEN_MESSAGE
    if not _ALLOWED.fullmatch(key):
        return f"unknown or unsupported PETSc option; allowed: {allowed_families()}"
    return None


def value_problem(value: object) -> str | None:
    """Why `value` may not be given to an option (None: a finite number, a bool or plain text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return None if math.isfinite(value) else f"the value must be finite, got {value!r}"
    if not isinstance(value, str):
        return f"the value must be text, a number or true/false, got {type(value).__name__}"
    if _FORBIDDEN_VALUE.search(value.lower()):
        return FORBIDDEN_MESSAGE
    if not _VALUE_TEXT.fullmatch(value):
        return ("a text value must be 1-64 characters of letters, digits, '_', '.', '+', '-' "
                f"(e.g. 'cg', 'hypre', '1e-10'), got {value!r}")
    return None


def check_petsc_options(options: dict) -> dict:
    """Raise PetscOptionError for the first disallowed key or value; return the dict unchanged."""
    if not isinstance(options, dict):
        raise PetscOptionError("", f"expected a table of option -> value, got {type(options).__name__}")
    for key, value in options.items():
        problem = key_problem(key) or value_problem(value)
        if problem:
            raise PetscOptionError(str(key), problem)
    return options
