"""1-D horn theory: the Webster horn equation, closed forms and a numerical solver.

A slender horn of cross-section A(z) vibrating axially at angular frequency ω obeys

    (A u')' + k² A u = 0,    k = ω / c0,   c0 = √(E/ρ)      (Webster; u the axial amplitude)

with both ends free (u'(0) = u'(L) = 0) for a horn's working (half-wave) mode. Conventions:
SI units; +z along the axis, input face (large end) at z = 0, output face at z = L;
amplitudes 0-peak; N = diameter_input / diameter_output (> 1 for tapered horns), so the
area ratio is N². Lateral inertia is ignored: 1-D theory is good to 0.1 % in frequency
for diameter/length ≲ 0.12 and to 1 % for ≲ 0.365; it says nothing of stress concentration
at a step or fillet. Every result here is a 1-D estimate.

Closed forms (x = kL; DOMAIN-NOTES "Closed-form horn theory"):

    uniform       x = π,                       gain 1
    exponential   x = π √(1 + (ln N/π)²),      gain N
    conical       tan x = x / [1 + N x²/(N−1)²],   gain N |cos x − (N−1)/(N x) sin x|
    catenoidal    tan x' = −(γL/x') tanh γL,  cosh γL = N,  x'² = x² − (γL)²,  gain N/|cos x'|
    stepped       A1 tan kL1 + A2 tan kL2 = 0   (sharp step), gain |cos kL1 cos kL2 − (A1/A2) sin kL1 sin kL2|

Uniform, conical, exponential and catenoidal horns all have r''/r constant, so with
u = ψ/r the equation becomes ψ'' + (k² − r''/r) ψ = 0: their mode shapes (and so the node
and the peak strain) are closed forms too (`taper_mode`).

`solve_webster(profile, c0)` solves any piecewise-smooth A(z) with exact transfer matrices
of short uniform segments (midpoint area; second order in the segment length, exact for
piecewise-uniform bars) and returns the fundamental free-free mode.

Example::

    >>> m = taper_mode("exponential", 0.1293, 2.0, 5051.0)
    >>> round(m.frequency_Hz), round(m.gain, 3)
    (20002, 2.0)
    >>> round(length_factor("conical", 4.0), 3), round(stress_factor("conical", 4.0), 3)
    (1.155, 0.567)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from ..errors import WeldSimError

TAPERS = ("uniform", "conical", "exponential", "catenoidal")
"""Horn families with a closed-form mode (r''/r constant)."""


class WebsterInputError(WeldSimError, ValueError):
    """A horn-theory input is out of range (non-positive length, N ≤ 1 for a taper ...)."""


# --- input checks ----------------------------------------------------------------------

def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise WebsterInputError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _ratio(kind: str, n_ratio: float) -> float:
    n_ratio = float(n_ratio)
    if kind == "uniform":
        if n_ratio != 1.0:
            raise WebsterInputError(f"a uniform bar has diameter ratio N = 1, got {n_ratio!r}")
        return n_ratio
    if kind not in TAPERS:
        raise WebsterInputError(f"unknown horn family '{kind}' (valid: {', '.join(TAPERS)})")
    if not (math.isfinite(n_ratio) and n_ratio > 1.0):
        raise WebsterInputError(
            f"a {kind} horn needs diameter ratio N = d_input/d_output > 1, got {n_ratio!r} "
            "(N = 1 is a uniform bar; the large end must be the input at z = 0)")
    return n_ratio


def wavenumber(frequency_Hz: float, sound_speed_m_s: float) -> float:
    """k = 2πf / c0 [1/m]."""
    return 2 * math.pi * _positive("frequency_Hz", frequency_Hz) / _positive("sound_speed_m_s", sound_speed_m_s)


# --- closed forms: tapered families -------------------------------------------------------

def _catenoid_xp(n_ratio: float) -> float:
    """x' = k'L of the catenoidal horn: root of x' sin x' + g tanh g cos x' = 0 in (π/2, π)."""
    g = math.acosh(n_ratio)
    return brentq(lambda xp: xp * math.sin(xp) + g * math.tanh(g) * math.cos(xp),
                  math.pi / 2, math.pi, xtol=1e-15, rtol=1e-15)


def resonant_kL(kind: str, n_ratio: float = 1.0) -> float:
    """x = kL of the first free-free mode of a uniform / conical / exponential / catenoidal horn."""
    n_ratio = _ratio(kind, n_ratio)
    if kind == "uniform":
        return math.pi
    if kind == "exponential":
        return math.pi * math.sqrt(1 + (math.log(n_ratio) / math.pi) ** 2)
    if kind == "conical":
        a = n_ratio / (n_ratio - 1) ** 2   # tan x = x/(1 + a x²), written without poles:
        return brentq(lambda x: math.sin(x) * (1 + a * x * x) - x * math.cos(x),
                      math.pi, 1.5 * math.pi, xtol=1e-15, rtol=1e-15)
    g = math.acosh(n_ratio)
    return math.hypot(_catenoid_xp(n_ratio), g)


def length_factor(kind: str, n_ratio: float = 1.0) -> float:
    """Resonant length / half wavelength (λ/2 = c0/2f) of the horn family: x/π."""
    return resonant_kL(kind, n_ratio) / math.pi


def closed_form_gain(kind: str, n_ratio: float = 1.0) -> float:
    """|u(L)/u(0)| at the first free-free resonance (the DOMAIN-NOTES formulas)."""
    n_ratio = _ratio(kind, n_ratio)
    if kind == "uniform":
        return 1.0
    if kind == "exponential":
        return n_ratio
    if kind == "conical":
        x = resonant_kL(kind, n_ratio)
        return n_ratio * abs(math.cos(x) - (n_ratio - 1) / (n_ratio * x) * math.sin(x))
    return n_ratio / abs(math.cos(_catenoid_xp(n_ratio)))


def resonant_length(kind: str, frequency_Hz: float, sound_speed_m_s: float, n_ratio: float = 1.0) -> float:
    """Length [m] of the horn of this family and ratio N whose first free-free mode is at
    frequency_Hz (uniform: c0/2f exactly)."""
    if kind == "uniform":
        return _positive("sound_speed_m_s", sound_speed_m_s) / (2 * _positive("frequency_Hz", frequency_Hz))
    return resonant_kL(kind, n_ratio) / wavenumber(frequency_Hz, sound_speed_m_s)


def resonant_frequency(kind: str, length_m: float, sound_speed_m_s: float, n_ratio: float = 1.0) -> float:
    """First free-free frequency [Hz] of a horn of this family (uniform: c0/2L exactly)."""
    length_m, c = _positive("length_m", length_m), _positive("sound_speed_m_s", sound_speed_m_s)
    if kind == "uniform":
        return c / (2 * length_m)
    return resonant_kL(kind, n_ratio) * c / (2 * math.pi * length_m)


@dataclass(frozen=True)
class HornMode:
    """The fundamental free-free (half-wave) mode of a 1-D horn.

    frequency_Hz; gain = |u(L)/u(0)|; node_z_m where u = 0; peak_strain_per_output =
    max|u'| / |u(L)| [1/m] at peak_strain_z_m (so the peak axial stress for an output
    amplitude U is E·peak_strain_per_output·U: `stress_Pa`); method says how it was found.
    """

    frequency_Hz: float
    length_m: float
    gain: float
    node_z_m: float
    peak_strain_per_output: float
    peak_strain_z_m: float
    method: str

    def stress_Pa(self, youngs_modulus_Pa: float, output_amplitude_0pk_m: float) -> float:
        """Peak axial stress amplitude [Pa] at output amplitude U (0-peak): E·max|u'|."""
        return youngs_modulus_Pa * self.peak_strain_per_output * output_amplitude_0pk_m


def _taper_radius(kind: str, n_ratio: float, length_m: float):
    """r(z)/r(0) and its derivative, for the closed-form families (r''/r = const)."""
    if kind == "uniform":
        return (lambda z: np.ones_like(z), lambda z: np.zeros_like(z), 0.0)
    if kind == "conical":
        alpha = (n_ratio - 1) / (n_ratio * length_m)
        return (lambda z: 1 - alpha * z, lambda z: np.full_like(z, -alpha), 0.0)
    if kind == "exponential":
        beta = math.log(n_ratio) / length_m
        return (lambda z: np.exp(-beta * z), lambda z: -beta * np.exp(-beta * z), beta * beta)
    gamma = math.acosh(n_ratio) / length_m
    return (lambda z: np.cosh(gamma * (length_m - z)) / n_ratio,
            lambda z: -gamma * np.sinh(gamma * (length_m - z)) / n_ratio, gamma * gamma)


def taper_mode(kind: str, length_m: float, n_ratio: float, sound_speed_m_s: float) -> HornMode:
    """Closed-form fundamental mode of a uniform / conical / exponential / catenoidal horn.

    u = ψ/r with ψ = r(0) cos k'z + (r'(0)/k') sin k'z (so u(0) = 1 and u'(0) = 0),
    k'² = k² − r''/r; the node is the zero of ψ and the peak strain is found by a bounded
    search on |u'| (it sits on the thin side of the node for a taper)."""
    length_m, c = _positive("length_m", length_m), _positive("sound_speed_m_s", sound_speed_m_s)
    n_ratio = _ratio(kind, n_ratio)
    x = resonant_kL(kind, n_ratio)
    k = x / length_m
    r, dr, curv = _taper_radius(kind, n_ratio, length_m)
    kp = math.sqrt(k * k - curv)
    r0p = float(dr(np.array(0.0)))

    def u(z):
        return (np.cos(kp * z) + r0p / kp * np.sin(kp * z)) / r(z)

    def du(z):
        psi = np.cos(kp * z) + r0p / kp * np.sin(kp * z)
        dpsi = -kp * np.sin(kp * z) + r0p * np.cos(kp * z)
        return (dpsi * r(z) - psi * dr(z)) / r(z) ** 2

    node = math.atan2(kp, -r0p) / kp          # ψ = 0: tan k'z = −k'/r'(0), k'z in (0, π)
    z = np.linspace(0.0, length_m, 2001)
    i = int(np.argmax(np.abs(du(z))))
    lo, hi = z[max(i - 1, 0)], z[min(i + 1, z.size - 1)]
    best = minimize_scalar(lambda s: -abs(float(du(np.array(s)))), bounds=(lo, hi), method="bounded",
                           options={"xatol": length_m * 1e-12})
    u_out = abs(float(u(np.array(length_m))))
    return HornMode(frequency_Hz=x * c / (2 * math.pi * length_m), length_m=length_m, gain=u_out,
                    node_z_m=node, peak_strain_per_output=abs(float(du(np.array(best.x)))) / u_out,
                    peak_strain_z_m=float(best.x), method=f"closed form ({kind})")


def stress_factor(kind: str, n_ratio: float = 1.0) -> float:
    """Peak stress of the horn / peak stress of a uniform half-wave bar of the same material
    and frequency at the same OUTPUT amplitude (= max|u'| / (k |u(L)|); uniform = 1).
    Reproduces ultrasonic-resonators.org "Classic horns" Table 1."""
    mode = taper_mode(kind, 1.0, n_ratio, 1.0)
    return mode.peak_strain_per_output / (2 * math.pi * mode.frequency_Hz)


# --- closed forms: uniform bar, stepped horn, displacement drive ----------------------------

def uniform_nodal_stress(youngs_modulus_Pa: float, density_kg_m3: float, frequency_Hz: float,
                         amplitude_0pk_m: float) -> float:
    """Nodal stress [Pa] of a half-wave uniform bar: σ = ρ·c0·ω·U = E·U·π/L (U 0-peak)."""
    e, rho = _positive("youngs_modulus_Pa", youngs_modulus_Pa), _positive("density_kg_m3", density_kg_m3)
    return rho * math.sqrt(e / rho) * 2 * math.pi * _positive("frequency_Hz", frequency_Hz) * \
        _positive("amplitude_0pk_m", amplitude_0pk_m)


def _stepped_args(l1, l2, a1, a2):
    l1, l2 = _positive("length_input_m", l1), _positive("length_output_m", l2)
    a1, a2 = _positive("area_input_m2", a1), _positive("area_output_m2", a2)
    return l1, l2, a1, a2


def stepped_mode(length_input_m: float, length_output_m: float, area_input_m2: float,
                 area_output_m2: float, sound_speed_m_s: float) -> HornMode:
    """Closed-form fundamental mode of a sharp-stepped horn: A1 tan kL1 + A2 tan kL2 = 0
    (written A1 sin kL1 cos kL2 + A2 cos kL1 sin kL2 = 0), first positive root."""
    l1, l2, a1, a2 = _stepped_args(length_input_m, length_output_m, area_input_m2, area_output_m2)
    c = _positive("sound_speed_m_s", sound_speed_m_s)

    def char(k):
        return a1 * math.sin(k * l1) * math.cos(k * l2) + a2 * math.cos(k * l1) * math.sin(k * l2)

    k = _first_root(np.vectorize(char), (l1 + l2))
    u_step, f_step = math.cos(k * l1), -k * a1 * math.sin(k * l1)        # state (u, A u') at z = L1
    u_out = math.cos(k * l2) * u_step + math.sin(k * l2) / (k * a2) * f_step
    # section 1: u = cos kz, |u'| = k|sin kz| peaks at the node kz = π/2 if the section reaches it
    z1 = min(l1, math.pi / (2 * k))
    strain = [k * abs(math.sin(k * z1))]
    # section 2: u = u_step cos k s + f_step/(k a2) sin k s; |u'| peaks at its amplitude if reached
    amp2, phase2 = math.hypot(u_step, f_step / (k * a2)), math.atan2(f_step / (k * a2), u_step)
    s_peak = ((math.pi / 2 + phase2) % math.pi) / k
    zs = [z1, l1, l1 + l2]
    strain += [abs(f_step) / a2, 0.0]
    if s_peak <= l2:
        strain.append(k * amp2)
        zs.append(l1 + s_peak)
    i = int(np.argmax(strain))
    if math.cos(k * l1) <= 0:
        node = math.pi / (2 * k)
    else:
        node = l1 + ((phase2 + math.pi / 2) % math.pi) / k   # u = amp2 cos(ks − phase2) = 0
    return HornMode(frequency_Hz=k * c / (2 * math.pi), length_m=l1 + l2, gain=abs(u_out),
                    node_z_m=node, peak_strain_per_output=strain[i] / abs(u_out),
                    peak_strain_z_m=zs[i], method="closed form (sharp step)")


def driven_gain_uniform(k: float, length_m: float) -> float:
    """u(L)/u(0) of a uniform bar whose input face is driven (displacement) and whose output
    face is free: 1/cos kL (signed; infinite at kL = π/2 + nπ, the fixed-free resonances)."""
    return 1.0 / math.cos(_positive("k", k) * _positive("length_m", length_m))


def driven_gain_stepped(k: float, length_input_m: float, length_output_m: float,
                        area_input_m2: float, area_output_m2: float) -> float:
    """u(L)/u(0) of a displacement-driven sharp-stepped horn with a free output face:
    1/[cos kL1 cos kL2 − (A2/A1) sin kL1 sin kL2] (signed)."""
    l1, l2, a1, a2 = _stepped_args(length_input_m, length_output_m, area_input_m2, area_output_m2)
    k = _positive("k", k)
    return 1.0 / (math.cos(k * l1) * math.cos(k * l2) - a2 / a1 * math.sin(k * l1) * math.sin(k * l2))


# --- numerical solver -------------------------------------------------------------------

@dataclass(frozen=True)
class AreaProfile:
    """A(z) [m²] on [0, L] in smooth pieces: piece i spans breaks[i]..breaks[i+1] and its
    area is areas[i](z) (vectorised over numpy arrays). A may jump between pieces (a step)."""

    breaks: tuple[float, ...]
    areas: tuple[Callable[[np.ndarray], np.ndarray], ...]

    def __post_init__(self):
        b = np.asarray(self.breaks, dtype=float)
        if b.size < 2 or b[0] != 0.0 or not np.all(np.diff(b) > 0) or not np.all(np.isfinite(b)):
            raise WebsterInputError(f"profile breaks must rise strictly from z = 0, got {self.breaks}")
        if len(self.areas) != b.size - 1:
            raise WebsterInputError(f"{b.size - 1} profile pieces need as many area functions, "
                                    f"got {len(self.areas)}")

    @property
    def length_m(self) -> float:
        return float(self.breaks[-1])

    @classmethod
    def from_radius(cls, breaks, radii) -> "AreaProfile":
        """Round cross-sections from radius functions r(z) [m], one per piece."""
        return cls(tuple(float(b) for b in breaks),
                   tuple((lambda z, r=r: math.pi * np.asarray(r(z), dtype=float) ** 2) for r in radii))

    def grid(self, segments: int):
        """Segment edges z (n+1), midpoint areas (n), and areas just inside each segment at
        its left/right edge (n each), with at least 64 segments per piece."""
        z_parts, mids, lefts, rights = [], [], [], []
        total = self.length_m
        for i, area in enumerate(self.areas):
            a, b = self.breaks[i], self.breaks[i + 1]
            n = max(64, int(round(segments * (b - a) / total)))
            z = np.linspace(a, b, n + 1)
            ai = np.asarray(area(z), dtype=float)
            am = np.asarray(area((z[1:] + z[:-1]) / 2), dtype=float)
            if not (np.all(np.isfinite(ai)) and np.all(ai > 0) and np.all(am > 0)):
                raise WebsterInputError(f"area must be positive and finite on piece {i} "
                                        f"(z = {a:g}..{b:g} m)")
            z_parts.append(z[:-1] if i < len(self.areas) - 1 else z)
            mids.append(am)
            lefts.append(ai[:-1])
            rights.append(ai[1:])
        return np.concatenate(z_parts), np.concatenate(mids), np.concatenate(lefts), np.concatenate(rights)


def _chain(t: np.ndarray) -> np.ndarray:
    """Product t[..., n-1] @ ... @ t[..., 0] of 2x2 matrices by pairwise reduction."""
    while t.shape[-3] > 1:
        if t.shape[-3] % 2:
            eye = np.broadcast_to(np.eye(2), t.shape[:-3] + (1, 2, 2))
            t = np.concatenate([t, eye], axis=-3)
        t = t[..., 1::2, :, :] @ t[..., 0::2, :, :]
    return t[..., 0, :, :]


def _transfer(k: np.ndarray, h: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Transfer matrices of uniform segments for state (u, A u'); k (m,1) -> (m, n, 2, 2)."""
    kh = k * h
    c, s = np.cos(kh), np.sin(kh)
    t = np.empty(kh.shape + (2, 2))
    t[..., 0, 0], t[..., 0, 1] = c, s / (k * area)
    t[..., 1, 0], t[..., 1, 1] = -k * area * s, c
    return t


def _end_force(k, h, area):
    """(A u')(L) for u(0) = 1, u'(0) = 0, for each k in the 1-D array k."""
    k = np.atleast_1d(np.asarray(k, dtype=float))[:, None]
    return _chain(_transfer(k, h, area))[:, 1, 0]


def _first_root(fun, length_m: float, x_max: float = 8 * math.pi, steps: int = 512,
                scan=None) -> float:
    """Smallest positive k with fun(k) = 0, from a scan in x = kL over (0, x_max] (with
    `scan`, a cheaper approximation of fun, if given), then Brent on fun."""
    x = np.linspace(x_max / steps, x_max, steps)
    values = (scan or fun)(x / length_m)
    change = np.nonzero(np.sign(values[1:]) != np.sign(values[:-1]))[0]
    if change.size == 0:
        raise WebsterInputError(f"no free-free resonance with kL below {x_max / math.pi:g}π: "
                                "check the profile (lengths and areas)")
    j = change[0]
    lo, hi = max(j - 1, 0), min(j + 2, steps - 1)       # one scan step of margin each side
    f_lo = fun(np.array([x[lo] / length_m]))[0]
    f_hi = fun(np.array([x[hi] / length_m]))[0]
    if np.sign(f_lo) == np.sign(f_hi):
        raise WebsterInputError("the fundamental resonance could not be bracketed: raise `segments`")
    return brentq(lambda k: float(fun(np.array([k]))[0]), x[lo] / length_m, x[hi] / length_m,
                  xtol=1e-14 / length_m, rtol=1e-15)


def solve_webster(profile: AreaProfile, sound_speed_m_s: float, segments: int = 4000) -> HornMode:
    """Fundamental free-free mode of (A u')' + k² A u = 0 on the profile, numerically.

    Transfer matrices of `segments` uniform segments (midpoint areas; at least 64 per
    piece) carry (u, A u') from z = 0; the first k > 0 with (A u')(L) = 0 is the
    fundamental (found by a scan in kL, then Brent). Strain u' = (A u')/A is taken at the
    segment edges with the exact area on each side of a jump."""
    c = _positive("sound_speed_m_s", sound_speed_m_s)
    z, area, a_left, a_right = profile.grid(int(segments))
    h = np.diff(z)
    length = profile.length_m
    zc, area_c, _, _ = profile.grid(min(int(segments), 256))
    k = _first_root(lambda kk: _end_force(kk, h, area), length,
                    scan=lambda kk: _end_force(kk, np.diff(zc), area_c))
    t = _transfer(np.array([[k]]), h, area)[0]
    state = np.empty((z.size, 2))
    state[0] = (1.0, 0.0)
    for i in range(h.size):
        state[i + 1] = t[i] @ state[i]
    u, force = state[:, 0], state[:, 1]
    strain_left = np.abs(force[:-1]) / a_left          # just right of edge i
    strain_right = np.abs(force[1:]) / a_right         # just left of edge i+1
    i_l, i_r = int(np.argmax(strain_left)), int(np.argmax(strain_right))
    peak, z_peak = ((strain_left[i_l], z[i_l]) if strain_left[i_l] >= strain_right[i_r]
                    else (strain_right[i_r], z[i_r + 1]))
    sign = np.nonzero(np.sign(u[1:]) != np.sign(u[:-1]))[0]
    if sign.size != 1:
        raise WebsterInputError(f"the mode found has {sign.size} nodes, not 1: the profile is "
                                "not a half-wave horn; refine `segments` or check the profile")
    j = sign[0]
    node = z[j] + (z[j + 1] - z[j]) * u[j] / (u[j] - u[j + 1])
    u_out = abs(u[-1])
    return HornMode(frequency_Hz=k * c / (2 * math.pi), length_m=length, gain=u_out, node_z_m=float(node),
                    peak_strain_per_output=float(peak) / u_out, peak_strain_z_m=float(z_peak),
                    method=f"numerical Webster ({h.size} transfer-matrix segments)")
