"""physics.structural: von Mises, Voigt conversions and the structural metrics (no dolfinx)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from weldsim_hpc.physics import structural as st
from weldsim_hpc.results import METRICS


def test_von_mises_of_elementary_states():
    s = 123e6
    assert st.von_mises(np.diag([s, 0, 0])) == pytest.approx(s, rel=1e-14)          # uniaxial
    assert st.von_mises(np.diag([s, s, s])) == pytest.approx(0.0, abs=1e-6)          # hydrostatic
    shear = np.array([[0, s, 0], [s, 0, 0], [0, 0, 0]])
    assert st.von_mises(shear) == pytest.approx(math.sqrt(3) * s, rel=1e-14)         # pure shear
    assert st.von_mises(np.diag([s, -s, 0])) == pytest.approx(math.sqrt(3) * s, rel=1e-14)


def test_von_mises_is_invariant_and_vectorised():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 3, 3)) * 1e8
    sym = 0.5 * (a + np.swapaxes(a, 1, 2))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotated = q @ sym @ q.T
    np.testing.assert_allclose(st.von_mises(rotated), st.von_mises(sym), rtol=1e-12)
    # invariant form: σ_vm² = ½[(σ1−σ2)² + (σ2−σ3)² + (σ3−σ1)²] from the principal stresses
    p = np.linalg.eigvalsh(sym)
    ref = np.sqrt(0.5 * ((p[:, 0] - p[:, 1])**2 + (p[:, 1] - p[:, 2])**2 + (p[:, 2] - p[:, 0])**2))
    np.testing.assert_allclose(st.von_mises(sym), ref, rtol=1e-12)
    voigt = st.tensor_to_voigt(sym)
    assert voigt.shape == (5, 6)
    np.testing.assert_allclose(st.voigt_to_tensor(voigt), sym, rtol=1e-15)
    np.testing.assert_allclose(st.von_mises(voigt), st.von_mises(sym), rtol=1e-14)
    with pytest.raises(ValueError, match="6"):
        st.von_mises(np.zeros(4))


def test_free_thermal_expansion():
    np.testing.assert_allclose(st.thermal_stress_free_displacement(1e-5, 100.0, [0.1, 0.0, -0.02]),
                               [1e-4, 0.0, -2e-5], rtol=1e-14)


def test_metrics_take_the_worst_volume_and_warn_above_yield():
    m = st.structural_metrics({"horn": 300e6, "anvil": 150e6}, {"horn": 600e6, "anvil": 100e6}, 2e-5)
    assert m.max_von_mises_Pa == 300e6
    assert m.von_mises_over_yield == pytest.approx(1.5)
    assert m.critical_volume == "anvil"
    assert len(m.warnings) == 1 and "anvil" in m.warnings[0] and "plasticity not modelled" in m.warnings[0]
    out = m.as_metrics()
    assert set(out) == {"max_von_mises_Pa", "von_mises_over_yield", "max_displacement_m"}
    for name, entry in out.items():
        assert METRICS[name].unit == entry["unit"]
    quiet = st.structural_metrics({"horn": 100e6}, {"horn": 600e6}, 0.0)
    assert quiet.warnings == () and quiet.von_mises_over_yield == pytest.approx(1 / 6)


@pytest.mark.parametrize("peaks, yields, umax, match", [
    ({}, {}, 0.0, "no volumes"),
    ({"horn": 1e6}, {}, 0.0, "no yield strength"),
    ({"horn": math.nan}, {"horn": 1e8}, 0.0, "finite"),
    ({"horn": 1e6}, {"horn": 1e8}, -1.0, "max_displacement_m"),
])
def test_metrics_reject_bad_input(peaks, yields, umax, match):
    with pytest.raises(ValueError, match=match):
        st.structural_metrics(peaks, yields, umax)
