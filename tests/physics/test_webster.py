"""1-D horn theory: closed forms against the published numbers, and the numerical Webster
solver against the closed forms (DOMAIN-NOTES "Closed-form horn theory")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from weldsim_hpc.physics.webster import (
    AreaProfile,
    WebsterInputError,
    closed_form_gain,
    driven_gain_stepped,
    driven_gain_uniform,
    length_factor,
    resonant_frequency,
    resonant_kL,
    resonant_length,
    solve_webster,
    stepped_mode,
    stress_factor,
    taper_mode,
    uniform_nodal_stress,
    wavenumber,
)

# Ti-6Al-4V pinned here (DOMAIN-NOTES table), never from the library
E_TI, RHO_TI = 113.8e9, 4430.0
C_TI = math.sqrt(E_TI / RHO_TI)   # 5068.4 m/s

# ultrasonic-resonators.org "Classic horns" Table 1, N = 4: length factor, gain, stress factor
TABLE_N4 = {
    "conical": (1.155, 3.148, 0.567),
    "exponential": (1.093, 4.000, 0.601),
    "catenoidal": (1.022, 5.154, 0.660),
}


def _radius(kind: str, length: float, n_ratio: float, r1: float = 0.02):
    """The profile written out here (independently of the module under test)."""
    r2 = r1 / n_ratio
    if kind == "uniform":
        return lambda z: np.full_like(z, r1)
    if kind == "conical":
        return lambda z: r1 + (r2 - r1) * z / length
    if kind == "exponential":
        return lambda z: r1 * np.exp(-math.log(n_ratio) * z / length)
    g = math.acosh(n_ratio) / length
    return lambda z: r2 * np.cosh(g * (length - z))


# --- published table ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", TABLE_N4)
def test_classic_horn_table_for_n4(kind):
    length, gain, stress = TABLE_N4[kind]
    assert length_factor(kind, 4.0) == pytest.approx(length, rel=1e-3)
    assert closed_form_gain(kind, 4.0) == pytest.approx(gain, rel=1e-3)
    # stress factor = peak stress / that of a uniform half-wave bar at the same output amplitude
    assert stress_factor(kind, 4.0) == pytest.approx(stress, rel=1e-3)


def test_closed_form_characteristic_equations_hold():
    n = 3.0
    x = resonant_kL("conical", n)
    assert math.tan(x) == pytest.approx(x / (1 + n * x * x / (n - 1) ** 2), rel=1e-12)
    g = math.acosh(n)
    xp = math.sqrt(resonant_kL("catenoidal", n) ** 2 - g * g)
    assert math.tan(xp) == pytest.approx(-(g / xp) * math.tanh(g), rel=1e-12)
    assert closed_form_gain("catenoidal", n) == pytest.approx(n / abs(math.cos(xp)), rel=1e-12)
    lam_half = C_TI / (2 * 20e3)
    assert resonant_length("exponential", 20e3, C_TI, n) == pytest.approx(
        lam_half * math.sqrt(1 + (math.log(n) / math.pi) ** 2), rel=1e-12)
    assert closed_form_gain("exponential", n) == n


def test_tapers_tend_to_the_uniform_bar_as_n_tends_to_one():
    for kind in ("conical", "exponential", "catenoidal"):
        assert length_factor(kind, 1.0001) == pytest.approx(1.0, abs=1e-3)
        assert closed_form_gain(kind, 1.0001) == pytest.approx(1.0, abs=1e-3)


# --- uniform bar ----------------------------------------------------------------------------

@pytest.mark.parametrize("f_kHz, length_mm", [(20, 126.71), (30, 84.47), (35, 72.41), (40, 63.35)])
def test_ti_half_wave_lengths(f_kHz, length_mm):
    assert resonant_length("uniform", f_kHz * 1e3, C_TI) * 1e3 == pytest.approx(length_mm, abs=0.005)


def test_uniform_bar_frequency_is_c_over_2l_exactly():
    for length in (0.05, 0.12671, 0.3):
        assert resonant_frequency("uniform", length, C_TI) == C_TI / (2 * length)
        mode = taper_mode("uniform", length, 1.0, C_TI)
        assert mode.frequency_Hz == pytest.approx(C_TI / (2 * length), rel=1e-14)
        assert mode.gain == pytest.approx(1.0, rel=1e-14)
        assert mode.node_z_m == pytest.approx(length / 2, rel=1e-14)


@pytest.mark.parametrize("pp_um, sigma_MPa", [(20, 28.2), (40, 56.4), (60, 84.6)])
def test_uniform_nodal_stress_ti_20khz(pp_um, sigma_MPa):
    u = pp_um * 1e-6 / 2                                  # peak-to-peak -> 0-peak
    sigma = uniform_nodal_stress(E_TI, RHO_TI, 20e3, u)
    assert sigma / 1e6 == pytest.approx(sigma_MPa, abs=0.05)
    length = C_TI / 40e3
    assert sigma == pytest.approx(E_TI * u * math.pi / length, rel=1e-12)
    assert taper_mode("uniform", length, 1.0, C_TI).stress_Pa(E_TI, u) == pytest.approx(sigma, rel=1e-9)
    numeric = solve_webster(AreaProfile.from_radius((0, length), (_radius("uniform", length, 1),)), C_TI)
    assert numeric.stress_Pa(E_TI, u) == pytest.approx(sigma, rel=1e-6)


# --- stepped horn ---------------------------------------------------------------------------

def test_quarter_wave_stepped_horn_gain_is_area_ratio_and_length_half_wave():
    quarter = C_TI / (4 * 20e3)
    for ratio in (2.0, 4.0, 9.0):
        mode = stepped_mode(quarter, quarter, ratio * 1e-4, 1e-4, C_TI)
        assert mode.frequency_Hz == pytest.approx(20e3, rel=1e-12)
        assert mode.length_m == pytest.approx(C_TI / (2 * 20e3), rel=1e-12)
        assert mode.gain == pytest.approx(ratio, rel=1e-12)
        assert mode.node_z_m == pytest.approx(quarter, rel=1e-12)            # node at the step
        # thin side of the step: stress = that of a uniform bar at the output amplitude
        assert mode.stress_Pa(E_TI, 10e-6) == pytest.approx(uniform_nodal_stress(E_TI, RHO_TI, 20e3, 10e-6),
                                                            rel=1e-9)


@pytest.mark.parametrize("l1, l2", [(0.06, 0.065), (0.07, 0.05), (0.04, 0.08)])
def test_stepped_closed_form_solves_its_equation_and_matches_the_numerical_solver(l1, l2):
    a1, a2 = 4e-4, 1e-4
    mode = stepped_mode(l1, l2, a1, a2, C_TI)
    k = wavenumber(mode.frequency_Hz, C_TI)
    assert a1 * math.tan(k * l1) + a2 * math.tan(k * l2) == pytest.approx(0.0, abs=1e-9 * a1)
    profile = AreaProfile((0.0, l1, l1 + l2), (lambda z: np.full_like(z, a1), lambda z: np.full_like(z, a2)))
    numeric = solve_webster(profile, C_TI)                 # piecewise uniform: exact
    for field in ("frequency_Hz", "gain", "node_z_m"):
        assert getattr(numeric, field) == pytest.approx(getattr(mode, field), rel=1e-9), field
    # the peak strain is sampled at segment edges: exact only when it sits on the step
    assert numeric.peak_strain_per_output == pytest.approx(mode.peak_strain_per_output, rel=1e-6)


def test_fillet_converges_to_the_sharp_step():
    quarter = C_TI / (4 * 20e3)
    r1, r2 = 0.02, 0.01
    sharp = stepped_mode(quarter, quarter, math.pi * r1**2, math.pi * r2**2, C_TI)
    errors = []
    for rf in (4e-3, 1e-3, 2.5e-4):
        def fillet(z, rf=rf):
            return r2 + rf - np.sqrt(np.clip(rf**2 - (quarter + rf - z) ** 2, 0, None))
        profile = AreaProfile.from_radius(
            (0, quarter, quarter + rf, 2 * quarter),
            (lambda z: np.full_like(z, r1), fillet, lambda z: np.full_like(z, r2)))
        errors.append(abs(solve_webster(profile, C_TI).frequency_Hz / sharp.frequency_Hz - 1))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3


# --- numerical solver against the tapered closed forms -------------------------------------

@pytest.mark.parametrize("kind", ["uniform", "conical", "exponential", "catenoidal"])
@pytest.mark.parametrize("n_ratio", [1.5, 4.0, 8.0])
def test_numerical_webster_matches_closed_forms(kind, n_ratio):
    if kind == "uniform":
        n_ratio = 1.0
    length = 0.13
    exact = taper_mode(kind, length, n_ratio, C_TI)
    numeric = solve_webster(AreaProfile.from_radius((0, length), (_radius(kind, length, n_ratio),)), C_TI)
    assert numeric.frequency_Hz == pytest.approx(exact.frequency_Hz, rel=1e-5)
    assert numeric.gain == pytest.approx(exact.gain, rel=1e-5)
    assert numeric.node_z_m == pytest.approx(exact.node_z_m, rel=1e-5)
    assert numeric.peak_strain_per_output == pytest.approx(exact.peak_strain_per_output, rel=1e-5)
    assert numeric.peak_strain_z_m == pytest.approx(exact.peak_strain_z_m, abs=1e-3 * length)
    if kind != "uniform":   # the closed-form mode agrees with the DOMAIN-NOTES gain formula
        assert exact.gain == pytest.approx(closed_form_gain(kind, n_ratio), rel=1e-12)


def test_taper_node_is_on_the_large_side_and_peak_stress_on_the_thin_side():
    for kind in ("conical", "exponential", "catenoidal"):
        mode = taper_mode(kind, 1.0, 4.0, 1.0)
        assert mode.node_z_m < 0.5 < mode.peak_strain_z_m


# --- displacement-driven gains ----------------------------------------------------------------

def test_driven_uniform_gain():
    length = 0.1
    for kl in (0.3, 1.0, 2.0, math.pi):
        assert driven_gain_uniform(kl / length, length) == pytest.approx(1 / math.cos(kl), rel=1e-14)
    assert driven_gain_uniform(math.pi / length, length) == pytest.approx(-1.0)   # free-free f1: not resonant


@pytest.mark.parametrize("f, expected", [(20e3, -4.000), (19.5e3, -4.031), (20.5e3, -4.031)])
def test_driven_stepped_gain(f, expected):
    quarter = C_TI / (4 * 20e3)
    gain = driven_gain_stepped(wavenumber(f, C_TI), quarter, quarter, 4.0, 1.0)
    assert gain == pytest.approx(expected, abs=5e-4)


def test_driven_stepped_gain_by_transfer_matrices():
    """Independent check: carry (u, A u') from the driven input face and impose a free output."""
    k, l1, l2, a1, a2 = 20.0, 0.05, 0.07, 3.0, 1.0

    def seg(kk, h, a):
        return np.array([[math.cos(kk * h), math.sin(kk * h) / (kk * a)],
                         [-kk * a * math.sin(kk * h), math.cos(kk * h)]])

    m = seg(k, l2, a2) @ seg(k, l1, a1)
    force0 = -m[1, 0] / m[1, 1]                  # (A u')(L) = 0 with u(0) = 1
    u_out = m[0, 0] + m[0, 1] * force0
    assert driven_gain_stepped(k, l1, l2, a1, a2) == pytest.approx(u_out, rel=1e-12)


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: taper_mode("conical", -0.1, 4.0, C_TI), "length_m"),
    (lambda: taper_mode("exponential", 0.1, 1.0, C_TI), "N = d_input/d_output > 1"),
    (lambda: taper_mode("catenoidal", 0.1, 0.5, C_TI), "N = d_input/d_output > 1"),
    (lambda: length_factor("conical", float("nan")), "> 1"),
    (lambda: taper_mode("uniform", 0.1, 2.0, C_TI), "N = 1"),
    (lambda: length_factor("parabolic", 2.0), "unknown horn family 'parabolic'"),
    (lambda: resonant_length("uniform", -20e3, C_TI), "frequency_Hz"),
    (lambda: stepped_mode(0.06, 0.0, 4e-4, 1e-4, C_TI), "length_output_m"),
    (lambda: driven_gain_stepped(20.0, 0.06, 0.06, -1.0, 1.0), "area_input_m2"),
    (lambda: AreaProfile((0.0, 0.1, 0.05), (np.ones_like, np.ones_like)), "rise strictly"),
    (lambda: solve_webster(AreaProfile((0.0, 0.1), (lambda z: 0 * z,)), C_TI), "area must be positive"),
])
def test_bad_input_is_refused_clearly(call, match):
    with pytest.raises(WebsterInputError, match=match):
        call()


def test_input_error_is_also_a_value_error():
    with pytest.raises(ValueError):
        length_factor("conical", 1.0)
