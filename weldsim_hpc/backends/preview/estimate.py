"""The preview backend: instant 1-D (Webster) estimates for a parametric horn.

`preview_case(case, material)` answers, in milliseconds and without a mesh, what an engineer
asks first of a horn drawing: where does it resonate (f_working_Hz, tuning error against the
case's target frequency), what length would resonate at the target, what gain does it give,
where is the nodal plane, and what peak stress (and fatigue safety factor) the requested
output amplitude costs. Every number is a 1-D estimate (`basis`): lateral inertia, parasitic
modes, face uniformity and stress concentration at a step or fillet are not modelled — the
fenicsx modal/harmonic run is the answer, this is the sketch.

Methods: uniform (cylinder, block), conical, exponential and catenoidal horns use the closed
forms of `physics.webster`; a stepped horn uses the numerical Webster solver on the area
profile of the horn as built, fillet included (the sharp-step closed form goes into `notes`).
`resonant_length_m` is the length that resonates at the target with the diameters kept:
the same profile stretched or shrunk axially, L·f_working/f_target (exact in 1-D), except
for a stepped horn, where both sections are scaled in proportion but the fillet radius is
kept (a horn that can be drawn), found by a secant iteration on the numerical solver.

Example::

    from weldsim_hpc.case_io import load_case
    from weldsim_hpc.materials import get_material
    case = load_case("examples/horn_exponential_harmonic.toml")
    result = preview_case(case, get_material("al7075_t6"))
    round(result.f_working_Hz), round(result.gain, 3)     # (20003, 2.0): 1-D estimate
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import newton

from ...geometry.horns import (
    BlockHorn,
    CatenoidalHorn,
    ConicalHorn,
    CylinderHorn,
    ExponentialHorn,
    SteppedHorn,
)
from ...materials import Material
from ...physics.webster import AreaProfile, HornMode, solve_webster, stepped_mode, taper_mode
from ..registry import BackendError

BASIS = "1-D estimate"
"""The label every preview result carries: Webster horn equation, no lateral inertia."""

HORN_KINDS = ("cylinder", "block", "stepped", "conical", "exponential", "catenoidal")

# 1-D frequency error from lateral inertia (DOMAIN-NOTES, Pochhammer–Chree for a cylinder)
_SLENDER_01PCT, _SLENDER_1PCT = 0.12, 0.365

NEW_METRIC_UNITS = {
    "resonant_length_m": ("m", "horn length (same profile, axially scaled) that resonates at the target"),
    "node_z_m": ("m", "axial position of the nodal plane (u = 0) of the working mode"),
    "peak_stress_z_m": ("m", "axial position of the peak axial stress of the working mode"),
}
"""Metric names the preview reports that `results.METRICS` does not register (yet)."""


@dataclass(frozen=True)
class PreviewResult:
    """A horn's working mode by 1-D theory. SI units, amplitudes 0-peak, +z from the input face.

    target/tuning/resonant-length fields are None when the case names no target frequency;
    max_stress_Pa is the peak axial stress amplitude (uniaxial, so also the von Mises peak)."""

    geometry_kind: str
    material_id: str
    method: str
    length_m: float
    f_working_Hz: float
    target_frequency_Hz: float | None
    tuning_error_Hz: float | None
    resonant_length_m: float | None
    gain: float
    node_z_m: float
    output_amplitude_0pk_m: float
    input_amplitude_0pk_m: float
    max_stress_Pa: float
    peak_stress_z_m: float
    fatigue_safety_factor: float
    von_mises_over_yield: float
    notes: tuple[str, ...] = ()
    basis: str = BASIS

    def as_metrics(self) -> dict[str, dict[str, float | str]]:
        """{name: {"value": float, "unit": str}} with the registry's names where they fit
        (f_working_Hz, tuning_error_Hz, gain, max_von_mises_Pa, fatigue_safety_factor, ...)
        and NEW_METRIC_UNITS' names otherwise; target-dependent entries only with a target."""
        from ...results import metric_spec

        values = {
            "f_working_Hz": self.f_working_Hz,
            "tuning_error_Hz": self.tuning_error_Hz,
            "gain": self.gain,
            "input_amplitude_0pk_m": self.input_amplitude_0pk_m,
            "output_amplitude_0pk_m": self.output_amplitude_0pk_m,
            "max_von_mises_Pa": self.max_stress_Pa,
            "von_mises_over_yield": self.von_mises_over_yield,
            "fatigue_safety_factor": self.fatigue_safety_factor,
            "resonant_length_m": self.resonant_length_m,
            "node_z_m": self.node_z_m,
            "peak_stress_z_m": self.peak_stress_z_m,
        }
        out = {}
        for name, value in values.items():
            if value is None:
                continue
            unit = NEW_METRIC_UNITS[name][0] if name in NEW_METRIC_UNITS else metric_spec(name).unit
            out[name] = {"value": float(value), "unit": unit}
        return out


def horn_profile(horn: SteppedHorn | ConicalHorn | ExponentialHorn | CatenoidalHorn | CylinderHorn
                 | BlockHorn) -> AreaProfile:
    """The cross-section area A(z) of a parametric horn as built, for `solve_webster`.

    Stepped: input cylinder, then the concave fillet r = r2 + rf − √(rf² − (L1 + rf − z)²)
    (from r2 + rf at the step face down to r2), then the output cylinder."""
    if isinstance(horn, CylinderHorn):
        r = horn.diameter_m / 2
        return AreaProfile.from_radius((0.0, horn.length_m), (lambda z: np.full_like(z, r),))
    if isinstance(horn, BlockHorn):
        a = horn.width_m * horn.depth_m
        return AreaProfile((0.0, horn.length_m), (lambda z: np.full_like(z, a),))
    if isinstance(horn, SteppedHorn):
        r1, r2, rf = horn.diameter_input_m / 2, horn.diameter_output_m / 2, horn.fillet_radius_m
        l1 = horn.length_input_m

        def fillet(z):
            return r2 + rf - np.sqrt(np.clip(rf * rf - (l1 + rf - z) ** 2, 0.0, None))

        return AreaProfile.from_radius((0.0, l1, l1 + rf, horn.length_m),
                                       (lambda z: np.full_like(z, r1), fillet, lambda z: np.full_like(z, r2)))
    return AreaProfile.from_radius((0.0, horn.length_m), (horn.radius_m,))


def _refuse(kind: str) -> BackendError:
    return BackendError(
        f"geometry.kind: the preview backend estimates parametric horns only "
        f"({', '.join(HORN_KINDS)}); '{kind}' needs a 3-D backend (solver.backend = \"fenicsx\" "
        "or \"auto\")")


def _mode(horn, c0: float) -> tuple[HornMode, list[str]]:
    """The working mode by the best 1-D method for this family, with family notes."""
    if isinstance(horn, CylinderHorn):
        return taper_mode("uniform", horn.length_m, 1.0, c0), []
    if isinstance(horn, BlockHorn):
        return taper_mode("uniform", horn.length_m, 1.0, c0), [
            "block horn: wide blocks have lateral and parasitic modes near the working one; "
            "run a 3-D modal analysis"]
    if isinstance(horn, SteppedHorn):
        a1, a2 = math.pi * horn.diameter_input_m ** 2 / 4, math.pi * horn.diameter_output_m ** 2 / 4
        sharp = stepped_mode(horn.length_input_m, horn.length_output_m, a1, a2, c0)
        note = (f"stepped horn: numerical Webster on the profile with its fillet; a sharp step "
                f"gives {sharp.frequency_Hz:.0f} Hz, gain {sharp.gain:.3f}. In 3-D the step lowers "
                "the frequency by several percent (about 3 % for Ø20/Ø10 mm) and concentrates "
                "stress at the fillet, which 1-D theory does not see")
        return solve_webster(horn_profile(horn), c0), [note]
    n_ratio = horn.diameter_input_m / horn.diameter_output_m
    return taper_mode(horn.kind, horn.length_m, n_ratio, c0), []


def _resonant_length(horn, mode: HornMode, c0: float, target: float) -> float:
    """Length resonating at `target`: axial scaling; stepped: sections scaled, fillet kept."""
    guess = mode.length_m * mode.frequency_Hz / target
    if not isinstance(horn, SteppedHorn):
        return guess

    def mismatch(length):
        scale = length / horn.length_m
        if horn.length_output_m * scale <= horn.fillet_radius_m:
            raise BackendError(f"the stepped horn cannot be tuned to {target:g} Hz by scaling its "
                               "sections: the output section would be shorter than the fillet")
        scaled = horn.model_copy(update={"length_input_m": horn.length_input_m * scale,
                                         "length_output_m": horn.length_output_m * scale})
        return solve_webster(horn_profile(scaled), c0).frequency_Hz / target - 1

    return float(newton(mismatch, guess, x1=guess * (1 + 1e-4), tol=1e-12 * guess, maxiter=20))


def _slenderness_note(horn, length_m: float) -> str | None:
    if isinstance(horn, BlockHorn):
        width = max(horn.width_m, horn.depth_m)
    else:
        width = horn.diameter_m if isinstance(horn, CylinderHorn) else horn.diameter_input_m
    ratio = width / length_m
    if ratio > _SLENDER_1PCT:
        return (f"width/length = {ratio:.2f} > {_SLENDER_1PCT}: lateral inertia makes the real "
                "frequency more than 1 % lower than this 1-D estimate")
    if ratio > _SLENDER_01PCT:
        return (f"width/length = {ratio:.2f} > {_SLENDER_01PCT}: expect the real frequency "
                "0.1-1 % lower than this 1-D estimate (lateral inertia)")
    return None


def preview_case(case, material: Material) -> PreviewResult:
    """1-D estimate of the working mode of case.geometry (a parametric horn) in `material`.

    Uses case.target_frequency_Hz (solver.target_frequency_Hz, else weld.frequency_Hz) for
    the tuning error and resonant length, and harmonic.output_amplitude_0pk_m (0-peak) for
    the stress. Raises BackendError for a tab stack or a mesh file."""
    horn = case.geometry
    if getattr(horn, "kind", None) not in HORN_KINDS:
        raise _refuse(getattr(horn, "kind", type(horn).__name__))
    c0 = material.bar_sound_speed_m_s
    mode, notes = _mode(horn, c0)
    slender = _slenderness_note(horn, mode.length_m)
    if slender:
        notes.append(slender)
    target = case.target_frequency_Hz
    if target is None:
        notes.append("no target frequency (solver.target_frequency_Hz or weld.frequency_Hz): "
                     "tuning error and resonant length not computed")
    if material.fatigue_note:
        notes.append(f"fatigue strength of {material.id}: {material.fatigue_note}")
    u_out = case.harmonic.output_amplitude_0pk_m
    stress = mode.stress_Pa(material.youngs_modulus_Pa, u_out)
    return PreviewResult(
        geometry_kind=horn.kind, material_id=material.id, method=mode.method, length_m=mode.length_m,
        f_working_Hz=mode.frequency_Hz, target_frequency_Hz=target,
        tuning_error_Hz=None if target is None else mode.frequency_Hz - target,
        resonant_length_m=None if target is None else _resonant_length(horn, mode, c0, target),
        gain=mode.gain, node_z_m=mode.node_z_m, output_amplitude_0pk_m=u_out,
        input_amplitude_0pk_m=u_out / mode.gain, max_stress_Pa=stress,
        peak_stress_z_m=mode.peak_strain_z_m,
        fatigue_safety_factor=material.fatigue_strength_Pa / stress,
        von_mises_over_yield=stress / material.yield_strength_Pa, notes=tuple(notes))
