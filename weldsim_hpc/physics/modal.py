"""Modal physics, backend-independent: mode classes, the working mode, separations, metrics.

A backend solves K φ = ω² M φ, mass-normalises the modes (φᵀ M φ = 1) and hands each
mode's mass-weighted energy fractions here (`ModeFractions`), computed about the horn
axis a = +z through the mass centroid c:

    e_ax  = ∫ρ (u·a)² / ∫ρ |u|²                       axial share
    e_tor = ∫ρ (u·e_θ)² / ∫ρ |u|²                     circumferential share about the axis
    lateral = 1 − e_ax                                 transverse share (includes e_tor)
    bending = Σ_slices m_s |ū_s|² / ∫ρ |u − (u·a)a|²   share of the lateral energy carried by
              the slice-averaged transverse displacement ū_s (mass-weighted mean of the
              transverse displacement over a slice of the body normal to z)
    tilt    = Σ_slices ∫_s ρ (θ_s × (x − x̄_s))_z² / ∫ρ |u|²   share of the energy in the
              axial motion of the slices' rigid TILT (u_z fitted by a + θ-rotation about
              the slice's transverse axes, least squares, mass-weighted): the rotation of
              the cross-sections in bending

Classes (checked in this order, thresholds inclusive):

    longitudinal   e_ax ≥ 0.8
    torsional      e_tor ≥ 0.8
    flexural       beam ≥ 0.8 and (bending·lateral + tilt) / beam ≥ 0.5, beam = lateral + tilt
                   (the cross-sections move sideways and tilt, as in Timoshenko bending)
    other          anything else (radial/breathing, mixed, plate-like modes)

Why the tilt: in a thick horn the cross-sections of a bending mode rotate, and that
rotation is axial motion (u_z ∝ x). For a Ø40 mm Ti cylinder, L = 126.71 mm, the second
bending pair at 20.14 kHz has e_ax = 0.25, so `lateral ≥ 0.8` alone calls it "other";
with the tilt counted it is flexural (beam = 0.99). With tilt = 0 the rule is exactly
`lateral ≥ 0.8 and bending ≥ 0.5`, and slender bars (Ø10: e_ax ≤ 0.09) never need it.

The working mode is the LONGITUDINAL mode nearest the target frequency — not the lowest
mode. Its separation is the distance to the nearest other (elastic) mode of any class;
separations below SEPARATION_FLAG_HZ (500 Hz) are flagged, modes within NEAR_WINDOW_HZ
(±2 kHz) of the working mode are reported with their class.

Example::

    >>> modes = [Mode(1, 19_700.0, ModeFractions(0.02, 0.0, 0.9)),
    ...          Mode(2, 20_010.0, ModeFractions(0.97, 0.0, 0.1))]
    >>> [m.mode_class.value for m in modes]
    ['flexural', 'longitudinal']
    >>> r = modal_summary(modes, 20_000.0)
    >>> r.working.index, r.tuning_error_Hz, r.separation_Hz, r.separation_flag
    (2, 10.0, 310.0, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Sequence

AXIAL_MIN = 0.8            # e_ax ≥ this: longitudinal
TORSIONAL_MIN = 0.8        # e_tor ≥ this: torsional
LATERAL_MIN = 0.8          # 1 − e_ax ≥ this ...
BENDING_SHARE_MIN = 0.5    # ... and the slice-mean transverse motion carries ≥ this: flexural
NEAR_WINDOW_HZ = 2000.0    # report modes within ± this of the working mode
SEPARATION_FLAG_HZ = 500.0  # flag another mode closer than this to the working mode


class ModeClass(str, Enum):
    """A mode's class; `code` is its number in metrics (metric values are numbers)."""

    OTHER = "other"
    LONGITUDINAL = "longitudinal"
    FLEXURAL = "flexural"
    TORSIONAL = "torsional"

    @property
    def code(self) -> int:
        return _CODES[self]


_CODES = {ModeClass.OTHER: 0, ModeClass.LONGITUDINAL: 1, ModeClass.FLEXURAL: 2, ModeClass.TORSIONAL: 3}


@dataclass(frozen=True)
class ModeFractions:
    """Mass-weighted energy fractions of one mode (each in [0, 1]; see the module doc).

    axial:     e_ax, share of ∫ρ|u|² in u_z
    torsional: e_tor, share in the circumferential component about the axis
    bending:   share of the LATERAL energy carried by the slice-mean transverse motion
    tilt:      share of the total energy in the axial motion of the slices' rigid tilt
               (≤ axial; 0 when the backend does not compute it)
    """

    axial: float
    torsional: float
    bending: float
    tilt: float = 0.0

    def __post_init__(self) -> None:
        for name in ("axial", "torsional", "bending", "tilt"):
            value = getattr(self, name)
            if not (math.isfinite(value) and -1e-9 <= value <= 1 + 1e-9):
                raise ValueError(f"{name} fraction must be within [0, 1], got {value!r}")

    @property
    def lateral(self) -> float:
        """1 − e_ax: the transverse (x, y) share of the energy."""
        return 1.0 - self.axial

    @property
    def beam(self) -> float:
        """lateral + tilt: the energy share of beam-like motion (sideways and tilting)."""
        return self.lateral + self.tilt

    @property
    def beam_share(self) -> float:
        """(bending·lateral + tilt) / beam: how much of it the slices carry as rigid
        translation and tilt (1 for Timoshenko bending, ~0 for torsion or breathing)."""
        return (self.bending * self.lateral + self.tilt) / self.beam if self.beam > 0 else 0.0


def classify(fr: ModeFractions) -> ModeClass:
    """The class of a mode from its energy fractions (rules in the module docstring)."""
    if fr.axial >= AXIAL_MIN:
        return ModeClass.LONGITUDINAL
    if fr.torsional >= TORSIONAL_MIN:
        return ModeClass.TORSIONAL
    if fr.beam >= LATERAL_MIN and fr.beam_share >= BENDING_SHARE_MIN:
        return ModeClass.FLEXURAL
    return ModeClass.OTHER


@dataclass(frozen=True)
class Mode:
    """One elastic mode: 1-based index in ascending frequency, frequency in Hz, fractions."""

    index: int
    frequency_Hz: float
    fractions: ModeFractions

    @property
    def mode_class(self) -> ModeClass:
        return classify(self.fractions)


def working_mode(modes: Iterable[Mode], target_Hz: float) -> Mode | None:
    """The longitudinal mode nearest target_Hz (the lower one on a tie), or None."""
    candidates = [m for m in modes if m.mode_class is ModeClass.LONGITUDINAL]
    if not candidates:
        return None
    return min(candidates, key=lambda m: (abs(m.frequency_Hz - target_Hz), m.frequency_Hz))


def nearest_other(modes: Sequence[Mode], mode: Mode) -> Mode | None:
    """The mode (other than `mode`) nearest to it in frequency, or None."""
    others = [m for m in modes if m.index != mode.index]
    return min(others, key=lambda m: abs(m.frequency_Hz - mode.frequency_Hz)) if others else None


@dataclass(frozen=True)
class ModalSummary:
    """What a modal run reports. Frequencies in Hz; None when there is no working mode.

    separation_Hz: |f_nearest other − f_working| (None with a single mode)
    separation_flag: another mode within SEPARATION_FLAG_HZ of the working mode
    near: the other modes within ±NEAR_WINDOW_HZ of the working mode
    """

    modes: tuple[Mode, ...]
    target_Hz: float
    working: Mode | None
    nearest: Mode | None
    near: tuple[Mode, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def f_working_Hz(self) -> float | None:
        return None if self.working is None else self.working.frequency_Hz

    @property
    def tuning_error_Hz(self) -> float | None:
        return None if self.working is None else self.working.frequency_Hz - self.target_Hz

    @property
    def separation_Hz(self) -> float | None:
        if self.working is None or self.nearest is None:
            return None
        return abs(self.nearest.frequency_Hz - self.working.frequency_Hz)

    @property
    def separation_flag(self) -> bool:
        return self.separation_Hz is not None and self.separation_Hz < SEPARATION_FLAG_HZ

    def as_metrics(self) -> dict[str, float]:
        """Metric name -> value (SI). Per mode k (ascending frequency): frequency_Hz and
        axial_fraction for every mode, torsional_fraction too; class_code (ModeClass.code)
        and separation_Hz (f_k − f_working, signed) for the working mode and the modes
        within ±2 kHz of it. Run-level: modes_found, and with a working mode f_working_Hz,
        tuning_error_Hz, mode_separation_Hz, mode_separation_flag (0/1), modes_near_working."""
        out: dict[str, float] = {"modes_found": float(len(self.modes))}
        for m in self.modes:
            out[f"mode.{m.index}.frequency_Hz"] = m.frequency_Hz
            out[f"mode.{m.index}.axial_fraction"] = m.fractions.axial
            out[f"mode.{m.index}.torsional_fraction"] = m.fractions.torsional
        if self.working is None:
            return out
        out["f_working_Hz"] = self.working.frequency_Hz
        out["tuning_error_Hz"] = self.tuning_error_Hz
        if self.separation_Hz is not None:
            out["mode_separation_Hz"] = self.separation_Hz
        out["mode_separation_flag"] = 1.0 if self.separation_flag else 0.0
        out["modes_near_working"] = float(len(self.near))
        for m in (self.working, *self.near):
            out[f"mode.{m.index}.class_code"] = float(m.mode_class.code)
            out[f"mode.{m.index}.separation_Hz"] = m.frequency_Hz - self.working.frequency_Hz
        return out


def modal_summary(modes: Iterable[Mode], target_Hz: float) -> ModalSummary:
    """Working mode, separation, near-by modes and warnings for the elastic modes found."""
    if not (math.isfinite(target_Hz) and target_Hz > 0):
        raise ValueError(f"target_Hz must be a positive frequency, got {target_Hz!r}")
    modes = tuple(sorted(modes, key=lambda m: m.frequency_Hz))
    work = working_mode(modes, target_Hz)
    warnings: list[str] = []
    if work is None:
        warnings.append(f"no longitudinal mode among the {len(modes)} modes found near "
                        f"{target_Hz:g} Hz: raise solver.modes_wanted or check the geometry")
        return ModalSummary(modes, target_Hz, None, None, (), tuple(warnings))
    nearest = nearest_other(modes, work)
    near = tuple(m for m in modes if m.index != work.index
                 and abs(m.frequency_Hz - work.frequency_Hz) <= NEAR_WINDOW_HZ)
    summary = ModalSummary(modes, target_Hz, work, nearest, near, ())
    if summary.separation_flag:
        warnings.append(
            f"mode {nearest.index} ({nearest.mode_class.value}, {nearest.frequency_Hz:.1f} Hz) is "
            f"{summary.separation_Hz:.1f} Hz from the working mode {work.index} "
            f"({work.frequency_Hz:.1f} Hz): under {SEPARATION_FLAG_HZ:g} Hz it can couple and spoil "
            "the face amplitude; change the diameter or length to move it away")
    return ModalSummary(modes, target_Hz, work, nearest, near, tuple(warnings))


def modes_table(summary: ModalSummary) -> list[dict]:
    """One JSON-ready row per mode (what results/modes.json lists)."""
    rows = []
    for m in summary.modes:
        rows.append({
            "index": m.index, "frequency_Hz": m.frequency_Hz, "class": m.mode_class.value,
            "axial_fraction": m.fractions.axial, "torsional_fraction": m.fractions.torsional,
            "lateral_fraction": m.fractions.lateral, "bending_share": m.fractions.bending,
            "tilt_fraction": m.fractions.tilt,
            "working": summary.working is not None and m.index == summary.working.index,
            "separation_Hz": (None if summary.working is None
                              else m.frequency_Hz - summary.working.frequency_Hz),
            "near_working": any(n.index == m.index for n in summary.near),
        })
    return rows
