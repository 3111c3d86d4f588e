"""solver.petsc_options: types and tolerances only; nothing that writes files, views or monitors."""

from __future__ import annotations

from pathlib import Path

import pytest

from weldsim_hpc.case import SolverSettings
from weldsim_hpc.case_io import apply_preset, parse_case, read_case_data
from weldsim_hpc.errors import CaseValidationError
from weldsim_hpc.petsc_options import (
    FORBIDDEN_MESSAGE,
    PetscOptionError,
    check_petsc_options,
    key_problem,
    value_problem,
)

ROOT = Path(__file__).resolve().parent.parent

ALLOWED = {"ksp_type": "cg", "pc_type": "hypre", "ksp_rtol": 1e-10, "ksp_atol": 1e-14, "ksp_max_it": 500,
           "pc_hypre_type": "boomeramg", "pc_gamg_threshold": 0.02, "pc_gamg_type": "agg",
           "ksp_gmres_restart": 100, "pc_factor_mat_solver_type": "mumps", "mg_levels_ksp_type": "chebyshev",
           "mg_levels_ksp_max_it": 2, "mg_levels_pc_type": "jacobi", "ksp_initial_guess_nonzero": True,
           "mat_mumps_icntl_14": 80, "pc_hypre_boomeramg_strong_threshold": 0.7}


def test_types_and_tolerances_are_allowed():
    assert check_petsc_options(dict(ALLOWED)) == ALLOWED
    assert SolverSettings(petsc_options=ALLOWED).petsc_options == ALLOWED
    assert SolverSettings().petsc_options == {}


@pytest.mark.parametrize("key", [
    "ksp_view", "ksp_view_mat", "mat_view", "ksp_converged_reason_view", "ksp_monitor", "ksp_monitor_true_residual",
    "snes_monitor", "options_file", "log_view", "log_summary", "ksp_view_pre", "mat_view_draw", "draw_pause",
    "ksp_type:file", "pc_type/x", "..", "options_left", "viewer_binary_filename", "history",
])
def test_options_that_write_are_refused_with_the_reason(key):
    assert key_problem(key) == FORBIDDEN_MESSAGE


@pytest.mark.parametrize("value", ["ascii:/tmp/out.txt", "/etc/passwd", "../x", "binary", ":x", "hdf5",
                                   "stdout", "python", "draw"])
def test_values_that_name_files_or_viewers_are_refused(value):
    assert value_problem(value) == FORBIDDEN_MESSAGE


@pytest.mark.parametrize("key", ["foo", "ksp_typo", "pc_gamg_repartition_file", "mat_mumps_icntl_1", "-ksp_type",
                                 "snes_type", "KSP_TYPE"])
def test_unknown_keys_are_refused_listing_the_allowed_families(key):
    problem = key_problem(key)
    assert problem is not None
    if key == "-ksp_type":
        assert "without the leading dash" in problem
    elif key != "pc_gamg_repartition_file":
        assert "allowed:" in problem and "ksp_type, pc_type" in problem and "pc_gamg_" in problem


@pytest.mark.parametrize("value", [float("nan"), float("inf"), ["cg"], {"a": 1}, None, "a b", "x" * 65, ""])
def test_odd_values_are_refused(value):
    assert value_problem(value) is not None


def test_check_raises_naming_the_key():
    with pytest.raises(PetscOptionError, match="^ksp_view: options that write files"):
        check_petsc_options({"ksp_type": "cg", "ksp_view": True})


def _case_with(options: dict):
    data = apply_preset(read_case_data(ROOT / "examples" / "tab_weld_cu_al_transient.toml"), "ci")
    data.setdefault("solver", {})["petsc_options"] = options
    return parse_case(data)


def test_case_error_path_names_the_option():
    with pytest.raises(CaseValidationError) as err:
        _case_with({"ksp_view": True, "ksp_type": "ascii:/tmp/x", "nonsense": 1, "ksp_rtol": ["1"]})
    errors = dict(err.value.errors)
    assert errors["solver.petsc_options.ksp_view"] == \
        "options that write files or views are not allowed (cases arrive from the portal)"
    assert errors["solver.petsc_options.ksp_type"] == FORBIDDEN_MESSAGE
    assert "allowed:" in errors["solver.petsc_options.nonsense"]
    assert "must be text, a number or true/false" in errors["solver.petsc_options.ksp_rtol"]
    assert len(err.value.errors) == 4


def test_case_keeps_value_types():
    case = _case_with({"ksp_type": "gmres", "ksp_rtol": 1e-9, "ksp_max_it": 200, "ksp_initial_guess_nonzero": True})
    opts = case.solver.petsc_options
    assert [type(opts[k]) for k in ("ksp_type", "ksp_rtol", "ksp_max_it", "ksp_initial_guess_nonzero")] == \
        [str, float, int, bool]
