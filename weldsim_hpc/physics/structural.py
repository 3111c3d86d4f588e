"""Static structural physics, backend-independent: von Mises stress and structural metrics.

SI units: Pa for stresses, m for displacements. Stress tensors are symmetric Cauchy
stresses; arrays of them have shape (..., 3, 3), or (..., 6) in the probe order
(xx, yy, zz, xy, yz, xz) of `results.PROBE_QUANTITIES["stress"]`.

    σ_vm = sqrt(3/2 · s:s),   s = σ − tr(σ)/3 · I           (von Mises equivalent stress)

Linear elastic with thermal strain (what the fenicsx backend solves):

    σ = 2μ ε(u) + λ tr(ε(u)) I − (3λ + 2μ) α (T − T_ref) I

Metrics (names from `results.METRICS`): max_von_mises_Pa, von_mises_over_yield (max over
volumes of the volume's peak von Mises / its material's yield strength; a warning above
1 because plasticity is not modelled) and max_displacement_m.

Example::

    >>> float(von_mises([[100e6, 0, 0], [0, 0, 0], [0, 0, 0]]))   # uniaxial: σ_vm = |σ|
    100000000.0
    >>> m = structural_metrics({"horn": 2e8}, {"horn": 4e8}, 1e-5)
    >>> m.von_mises_over_yield, m.warnings
    (0.5, ())
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: σ_vm / σ_y above which the metrics carry a warning (linear elasticity only)
YIELD_WARNING = 1.0


def voigt_to_tensor(voigt: np.ndarray) -> np.ndarray:
    """(..., 6) components (xx, yy, zz, xy, yz, xz) -> (..., 3, 3) symmetric tensors."""
    v = np.asarray(voigt, dtype=np.float64)
    if v.shape[-1] != 6:
        raise ValueError(f"expected (..., 6) stress components, got shape {v.shape}")
    xx, yy, zz, xy, yz, xz = np.moveaxis(v, -1, 0)
    return np.stack([np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1),
                     np.stack([xz, yz, zz], -1)], -2)


def tensor_to_voigt(tensor: np.ndarray) -> np.ndarray:
    """(..., 3, 3) tensors -> (..., 6) components (xx, yy, zz, xy, yz, xz); the shear
    components are the symmetric parts ½(σ_ij + σ_ji)."""
    s = np.asarray(tensor, dtype=np.float64)
    if s.shape[-2:] != (3, 3):
        raise ValueError(f"expected (..., 3, 3) stress tensors, got shape {s.shape}")
    sym = 0.5 * (s + np.swapaxes(s, -1, -2))
    return np.stack([sym[..., 0, 0], sym[..., 1, 1], sym[..., 2, 2],
                     sym[..., 0, 1], sym[..., 1, 2], sym[..., 0, 2]], -1)


def von_mises(stress: np.ndarray) -> np.ndarray:
    """von Mises stress (Pa) of (..., 3, 3) tensors or (..., 6) Voigt components (Pa)."""
    s = np.asarray(stress, dtype=np.float64)
    if s.shape[-2:] != (3, 3):
        s = voigt_to_tensor(s)
    sym = 0.5 * (s + np.swapaxes(s, -1, -2))
    dev = sym - np.trace(sym, axis1=-2, axis2=-1)[..., None, None] / 3.0 * np.eye(3)
    return np.sqrt(1.5 * np.einsum("...ij,...ij->...", dev, dev))


def thermal_stress_free_displacement(alpha_1_K: float, delta_T_K, x_m) -> np.ndarray:
    """u = α·ΔT·x (m): free expansion of a body under a uniform ΔT about a fixed point at
    the origin (x the position relative to that point, m)."""
    return alpha_1_K * np.asarray(delta_T_K, dtype=np.float64) * np.asarray(x_m, dtype=np.float64)


@dataclass(frozen=True)
class StructuralMetrics:
    """What a static structural run reports (metrics.json names: max_von_mises_Pa,
    von_mises_over_yield, max_displacement_m).

    max_von_mises_Pa:     peak von Mises over the body (how the backend samples it is
                          stated by the backend: fenicsx uses the cellwise midpoint values)
    von_mises_over_yield: max over volumes of (peak von Mises in the volume) / (its yield)
    critical_volume:      the volume where that ratio is reached
    max_displacement_m:   largest displacement magnitude, m
    warnings:             readable warnings (ratio above YIELD_WARNING)
    """

    max_von_mises_Pa: float
    von_mises_over_yield: float
    critical_volume: str
    max_displacement_m: float
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def as_metrics(self) -> dict[str, dict[str, float | str]]:
        """name -> {value, unit}, as results/metrics.json stores them."""
        return {
            "max_von_mises_Pa": {"value": self.max_von_mises_Pa, "unit": "Pa"},
            "von_mises_over_yield": {"value": self.von_mises_over_yield, "unit": "1"},
            "max_displacement_m": {"value": self.max_displacement_m, "unit": "m"},
        }


def structural_metrics(max_von_mises_by_volume_Pa: Mapping[str, float],
                       yield_by_volume_Pa: Mapping[str, float],
                       max_displacement_m: float) -> StructuralMetrics:
    """Metrics from the peak von Mises of each volume group and its material's yield.

    Warns when a volume's peak exceeds its yield strength: the stresses of a linear
    elastic analysis are then an overestimate, because plasticity is not modelled.
    """
    if not max_von_mises_by_volume_Pa:
        raise ValueError("no volumes: max_von_mises_by_volume_Pa is empty")
    missing = sorted(set(max_von_mises_by_volume_Pa) - set(yield_by_volume_Pa))
    if missing:
        raise ValueError(f"no yield strength for volumes {missing}")
    for name, value in (*max_von_mises_by_volume_Pa.items(), ("max_displacement_m", max_displacement_m)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}: expected a finite non-negative value, got {value!r}")
    ratios = {v: s / yield_by_volume_Pa[v] for v, s in max_von_mises_by_volume_Pa.items()}
    critical = max(ratios, key=ratios.__getitem__)
    warnings = tuple(
        f"{v}: peak von Mises stress {max_von_mises_by_volume_Pa[v] / 1e6:.1f} MPa is "
        f"{r:.2f} of the yield strength ({yield_by_volume_Pa[v] / 1e6:.1f} MPa): "
        "plasticity not modelled, the linear elastic stresses above yield are not physical; "
        "reduce the load or check the design"
        for v, r in sorted(ratios.items()) if r > YIELD_WARNING)
    return StructuralMetrics(max(max_von_mises_by_volume_Pa.values()), ratios[critical], critical,
                             float(max_displacement_m), warnings)
