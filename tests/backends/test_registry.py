"""The backend registry: availability by find_spec (never an import), selection and its errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from weldsim_hpc.backends import registry
from weldsim_hpc.backends.registry import (BACKENDS, BackendError, available_backends, missing_modules,
                                          select_backend)

NOW = ("thermal_steady", "thermal_transient", "static_structural", "coupled_thermo_structural", "modal",
       "harmonic")


@pytest.fixture
def without(monkeypatch):
    """without(*modules): make find_spec miss those modules."""
    def hide(*modules):
        real = registry._module_found
        monkeypatch.setattr(registry, "_module_found", lambda name: name not in modules and real(name))
    return hide


def test_only_real_backends_are_registered():
    assert list(BACKENDS) == ["fenicsx", "scipy", "preview"]
    assert BACKENDS["fenicsx"].analyses == NOW and BACKENDS["fenicsx"].parallel
    assert BACKENDS["scipy"].analyses == NOW and not BACKENDS["scipy"].parallel
    assert BACKENDS["scipy"].requires == ("numpy", "scipy", "pyamg")
    assert BACKENDS["preview"].analyses == ("modal", "harmonic") and not BACKENDS["preview"].parallel


@pytest.mark.parametrize("analysis", NOW)
def test_auto_picks_fenicsx_where_dolfinx_is_installed(analysis):
    assert available_backends() == ["fenicsx", "scipy", "preview"]
    assert select_backend("auto", analysis) == "fenicsx"
    assert select_backend("fenicsx", analysis) == "fenicsx"


def test_availability_check_imports_nothing():
    code = ("import sys; from weldsim_hpc.backends.registry import available_backends as a; a(); "
            "print([m for m in ('dolfinx', 'petsc4py', 'mpi4py') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_explicit_fenicsx_without_dolfinx_is_an_error_not_a_switch(without):
    without("dolfinx")
    assert available_backends() == ["scipy", "preview"]
    with pytest.raises(BackendError, match="'fenicsx' needs dolfinx.*python3-dolfinx"):
        select_backend("fenicsx", "thermal_steady")


@pytest.mark.parametrize("analysis", NOW)
def test_auto_picks_scipy_where_dolfinx_is_missing(without, analysis):
    without("dolfinx")
    assert select_backend("auto", analysis) == "scipy"
    assert select_backend("scipy", analysis) == "scipy"


def test_scipy_solves_horn_dynamics_but_auto_prefers_fenicsx_where_installed(without):
    assert select_backend("scipy", "modal") == "scipy" and select_backend("scipy", "harmonic") == "scipy"
    if not missing_modules("fenicsx"):
        assert select_backend("auto", "harmonic") == "fenicsx"


def test_auto_without_any_backend_names_the_analysis_and_what_is_missing(without):
    without("dolfinx", "pyamg")
    with pytest.raises(BackendError, match="no available backend supports analysis 'thermal_steady'.*fenicsx "
                                           r"\(needs dolfinx\)"):
        select_backend("auto", "thermal_steady")


def test_analysis_no_available_backend_supports_is_named(without):
    without("dolfinx", "pyamg")  # auto never picks the 1-D preview for horn dynamics
    with pytest.raises(BackendError, match="no available backend supports analysis 'harmonic'"):
        select_backend("auto", "harmonic")
    with pytest.raises(BackendError, match="'preview' does not support analysis 'static_structural'"):
        select_backend("preview", "static_structural")


@pytest.mark.parametrize("analysis", ["modal", "harmonic"])
def test_preview_runs_only_when_asked_for(analysis):
    """auto never answers a 3-D case with the 1-D estimate; by name it runs horn dynamics."""
    assert select_backend("preview", analysis) == "preview"
    with pytest.raises(BackendError, match="'preview' does not support analysis 'thermal_steady'"):
        select_backend("preview", "thermal_steady")


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(BackendError, match="unknown backend 'abaqus' \\(valid: auto, fenicsx, scipy, preview\\)"):
        select_backend("abaqus", "thermal_steady")
