"""Mesh sizing: the frequency rule, settings resolution, the cell estimate and its limit."""

from __future__ import annotations

import math
import re

import pytest
from pydantic import ValidationError

from weldsim_hpc.errors import MeshError
from weldsim_hpc.geometry import (
    CylinderHorn,
    MeshSettings,
    ResolvedSizes,
    SteppedHorn,
    check_cell_limit,
    default_size_m,
    estimate_cells,
    generate,
    resolve_sizes,
    shear_wave_speed,
)

# Ti-6Al-4V, pinned here (DOMAIN-NOTES): E = 113.8 GPa, nu = 0.342, rho = 4430 kg/m3
E, NU, RHO = 113.8e9, 0.342, 4430.0
C_S = math.sqrt(E / (2 * (1 + NU) * RHO))           # 3093.7 m/s
HORN_20K = CylinderHorn(length_m=0.12671, diameter_m=0.04)


def test_shear_wave_speed_ti():
    assert shear_wave_speed(E, NU, RHO) == pytest.approx(C_S, rel=1e-12)
    assert C_S == pytest.approx(3093.7, abs=0.1)


def test_default_size_20khz_d40_horn_quadratic():
    sizes = resolve_sizes(MeshSettings(), HORN_20K, C_S, 20e3, element_order=2)
    wavelength = C_S / (1.5 * 20e3)                    # 0.1031 m
    assert sizes.size_m == pytest.approx(min(wavelength / 6, 0.04 / 4), rel=1e-12)
    assert sizes.size_m == pytest.approx(0.01)         # 4 elements across the diameter win
    assert sizes.refine_size_m == pytest.approx(sizes.size_m / 2)
    assert sizes.refine_distance_m == pytest.approx(sizes.size_m)
    assert sizes.max_cells == 1_500_000 and "lambda_s/6" in sizes.rule


def test_default_size_wavelength_branch_and_linear_rule():
    fat = CylinderHorn(length_m=0.12671, diameter_m=0.12)      # d/4 = 30 mm
    wavelength = C_S / (1.5 * 20e3)
    quadratic = resolve_sizes(MeshSettings(), fat, C_S, 20e3, element_order=2)
    linear = resolve_sizes(MeshSettings(), fat, C_S, 20e3, element_order=1)
    assert quadratic.size_m == pytest.approx(wavelength / 6, rel=1e-12)   # 17.2 mm
    assert linear.size_m == pytest.approx(wavelength / 10, rel=1e-12)     # 10.3 mm
    assert default_size_m(C_S, 40e3, 0.12, 2) == pytest.approx(wavelength / 12, rel=1e-12)


def test_explicit_settings_win_and_are_checked():
    sizes = resolve_sizes(MeshSettings(size_m=0.004, refine_size_m=0.001,
                                       refine_distance_m=0.002, curvature_segments=48),
                          HORN_20K)
    assert (sizes.size_m, sizes.refine_size_m, sizes.refine_distance_m,
            sizes.curvature_segments) == (0.004, 0.001, 0.002, 48)
    with pytest.raises(ValidationError, match="refine_size_m .* must not exceed size_m"):
        MeshSettings(size_m=0.004, refine_size_m=0.005)
    with pytest.raises(MeshError, match="mesh.refine_size_m"):   # against a default size
        resolve_sizes(MeshSettings(refine_size_m=0.05), HORN_20K, C_S, 20e3)
    with pytest.raises(MeshError, match="mesh.size_m"):
        resolve_sizes(MeshSettings(), HORN_20K)          # no frequency, no size
    with pytest.raises(ValidationError, match="size_m"):
        MeshSettings(size_m=-1.0)
    with pytest.raises(ValidationError, match="max_cell"):
        MeshSettings(max_cell=10)                        # misspelt: extra keys forbidden


def test_cell_limit_refuses_a_too_fine_mesh_naming_the_estimate():
    sizes = resolve_sizes(MeshSettings(size_m=0.0008), HORN_20K)
    estimate = estimate_cells(HORN_20K, sizes)
    assert estimate > 1_500_000
    with pytest.raises(MeshError) as info:
        check_cell_limit(HORN_20K, sizes)
    message = str(info.value)
    shown = re.match(r"estimated ([\d.]+) million cells exceed the limit of 1\.5 million: "
                     r"raise mesh\.size_m or mesh\.max_cells$", message)
    assert shown, message
    assert float(shown.group(1)) == pytest.approx(estimate / 1e6, rel=0.01)
    # a raised limit (int or the settings object) lets it through
    assert check_cell_limit(HORN_20K, sizes, estimate) == estimate
    assert check_cell_limit(HORN_20K, sizes, MeshSettings(max_cells=estimate + 1)) == estimate


def test_generate_refuses_before_meshing(tmp_path):
    sizes = ResolvedSizes(0.005, 0.0025, 0.005, max_cells=1000)
    with pytest.raises(MeshError, match=r"estimated [\d,]+ cells exceed the limit of 1,000"):
        generate(HORN_20K, sizes, tmp_path)
    with pytest.raises(MeshError, match="limit of 1,000: raise mesh.size_m or mesh.max_cells"):
        generate(HORN_20K, MeshSettings(max_cells=1000), tmp_path, shear_speed_m_s=C_S,
                 target_frequency_Hz=20e3)
    assert not any(tmp_path.iterdir())


@pytest.mark.gmsh
@pytest.mark.parametrize("horn", [
    HORN_20K,
    SteppedHorn(length_input_m=0.064, length_output_m=0.064, diameter_input_m=0.04,
                diameter_output_m=0.02, fillet_radius_m=0.004),
], ids=["cylinder", "stepped"])
def test_cell_estimate_within_factor_two_of_gmsh(tmp_path, horn):
    import meshio as meshio
    for size in (0.01, 0.004):
        sizes = resolve_sizes(MeshSettings(size_m=size), horn)
        files = generate(horn, sizes, tmp_path / f"h{size}")
        mesh = meshio.read(files.msh)
        actual = sum(len(b.data) for b in mesh.cells if b.type == "tetra")
        estimate = estimate_cells(horn, sizes)
        assert 0.5 < estimate / actual < 2.0, (size, estimate, actual)
