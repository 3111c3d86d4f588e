"""Harmonic base excitation by modal superposition on one node (numpy/scipy) — the
formulation, metrics and curves of `backends/fenicsx/harmonic.py` (read its docstring for
the derivation); only the linear algebra differs:

    u(ω)/U = ψ + Σᵢ φᵢ qᵢ(ω) + ω²/(1 + iη_r) · r,     qᵢ(ω) = ω² pᵢ / (ωᵢ²(1 + iηᵢ) − ω²)

* the input face moves axially (every component prescribed there: e_z), fixed/displacement
  groups are extra homogeneous constraints; constrained dofs are eliminated;
* ψ: K_ff ψ_f = −K_fc e_z (one SuperLU factorisation of K_ff); χ: K_ff χ_f = (Mψ)_f;
* φᵢ: EVERY fixed-input mode up to MODE_CUTOFF × the top drive frequency (eigsh
  shift-and-invert at σ = 0, nev raised as in fenicsx until the highest returned mode lies
  above the cut-off), mass-normalised; pᵢ = φᵢᵀMψ; r = χ − Σ φᵢ pᵢ/ωᵢ²;
* ηᵢ = φᵢᵀK_ηφᵢ / φᵢᵀKφᵢ with K_η = ∫η σ:ε (η per volume; case.harmonic.loss_factor
  overrides), η_r likewise;
* gain = Σⱼ wⱼ|u_z,j| / Σⱼ wⱼ over the output-face z dofs, wⱼ = ∫ Nⱼ dA; uniformity =
  min/max |u_z| there; U_in = output_amplitude_0pk_m / gain;
* peak von Mises over a cycle in closed form (`cycle_peak_sq`) at each cell midpoint;
  σ(Re û) as the DG(p − 1) stress for probes; drive force F = U·ψᵀ[K + iK_η − ω²M]u.

Public API::

    solve_harmonic(mesh, case, materials, *, f_working_Hz, on_progress=None) -> HarmonicResult
    HarmonicProblem(mesh, case, materials)  .modal_basis(cutoff_Hz) / .response(freqs)
        / .direct(frequency_Hz) (a complex direct solve, for checks) / .direct_response
    HarmonicResult, HarmonicSolverError; HarmonicCurves, cycle_peak_sq and
    modal_coefficients are the fenicsx backend's pure helpers (re-exported, numpy only)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ...case import CaseSpec
from ...errors import SolverError, WeldSimError
from ...geometry.groups import INPUT_FACE, OUTPUT_FACE
from ...materials import Material
from ...physics import structural as phys
from .elasticity import _entities, check_constrained
from .fe import Facets, Space, containing_cells, reference_nodes, tet_basis
from .modal import eigen_near, vector_mass_local, zero_dirichlet_dofs
from .thermal import cellwise, group_tag, material_for, volume_groups

ProgressCallback = Callable[[int, float, float, str, str, float], None]
MODE_CUTOFF = 3.0        # modes up to this × the top drive frequency (as fenicsx)
DEFAULT_SPAN = 0.10      # curve range f_working·(1 ± this) when frequency_range_Hz is unset
MAX_MODES = 800
PHASE = "harmonic"


class HarmonicSolverError(SolverError):
    """The eigen- or linear solves of the harmonic analysis failed."""


# --- pure helpers (identical to the fenicsx backend's; kept here so no dolfinx import) -----
def modal_coefficients(freqs_Hz: np.ndarray, omega_i: np.ndarray, p: np.ndarray, eta_i: np.ndarray,
                       eta_r: float) -> np.ndarray:
    """(n_freq, 2 + n_modes) complex coefficients of [ψ, φ₁..φ_N, r] per unit input."""
    w2 = (2 * np.pi * np.asarray(freqs_Hz, dtype=float))[:, None] ** 2
    q = w2 * p[None, :] / (omega_i[None, :] ** 2 * (1 + 1j * eta_i[None, :]) - w2)
    return np.hstack([np.ones_like(w2, dtype=complex), q, w2 / (1 + 1j * eta_r)])


def cycle_peak_sq(a: Any, b: Any, c: Any) -> Any:
    """max over t of |x_r cos t − x_i sin t|² given a = x_r·x_r, b = x_i·x_i, c = x_r·x_i."""
    return (a + b) / 2 + np.sqrt(((a - b) / 2) ** 2 + c ** 2)


@dataclass
class HarmonicCurves:
    """Frequency response per frequency (arrays), for the scaled input amplitude."""

    frequency_Hz: np.ndarray
    gain: np.ndarray
    output_phase_deg: np.ndarray
    input_force_0pk_N: np.ndarray
    input_force_phase_deg: np.ndarray
    input_amplitude_0pk_m: float

    def as_json(self) -> dict:
        return {"format": "weldsim-harmonic-curves", "version": 1,
                "excitation": "input_face moves axially U cos(wt); U = input_amplitude_0pk_m",
                "input_amplitude_0pk_m": float(self.input_amplitude_0pk_m),
                "units": {"frequency_Hz": "Hz", "gain": "1", "output_phase_deg": "deg",
                          "input_force_0pk_N": "N", "input_force_phase_deg": "deg"},
                **{k: [float(v) for v in getattr(self, k)] for k in
                   ("frequency_Hz", "gain", "output_phase_deg", "input_force_0pk_N", "input_force_phase_deg")}}


@dataclass
class HarmonicResult:
    """What solve_harmonic returns. SI units; fields on `space` ((n_dofs, 3) arrays)."""

    f_working_Hz: float
    gain: float
    uniformity: float
    input_amplitude_0pk_m: float
    output_amplitude_0pk_m: float
    max_von_mises_Pa: float
    max_von_mises_by_volume_Pa: dict[str, float]
    fatigue_safety_factor: float
    von_mises_over_yield: float
    max_displacement_m: float
    input_force_0pk_N: float
    curves: HarmonicCurves
    space: Space
    displacement: np.ndarray        # Re û (scaled) at f_working, (n_dofs, 3)
    displacement_imag: np.ndarray
    von_mises_dg0: np.ndarray       # cellwise peak over the cycle, Pa
    stress_nodes: np.ndarray        # (n_cells, 1|4, 3, 3) DG(p−1) σ(Re û), Pa
    mode_frequencies_Hz: np.ndarray
    cutoff_Hz: float
    n_dofs: int
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def stress_at(self, points: np.ndarray) -> np.ndarray:
        """(n, 6) σ(Re û) at points (mean over the cells containing a point); nan outside."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.full((len(pts), 3, 3), np.nan)
        for i, p in enumerate(pts):
            cells, ref = containing_cells(self.space, p)
            if len(cells):
                N = np.ones((len(cells), 1)) if self.space.order == 1 else tet_basis(1, ref)[0]
                out[i] = np.einsum("ka,kaij->kij", N, self.stress_nodes[cells]).mean(axis=0)
        return phys.tensor_to_voigt(out)

    def metrics(self) -> dict[str, float]:
        return {"f_working_Hz": self.f_working_Hz, "gain": self.gain, "uniformity": self.uniformity,
                "input_amplitude_0pk_m": self.input_amplitude_0pk_m,
                "output_amplitude_0pk_m": self.output_amplitude_0pk_m,
                "max_von_mises_Pa": self.max_von_mises_Pa, "fatigue_safety_factor": self.fatigue_safety_factor,
                "von_mises_over_yield": self.von_mises_over_yield,
                "max_displacement_m": self.max_displacement_m, "n_dofs": float(self.n_dofs)}


class HarmonicProblem:
    """Space, constraints and the assembled K, M, K_η of a base-excited horn."""

    def __init__(self, mesh: Any, case: CaseSpec, materials: Mapping[str, Material]):
        self.mesh, self.case = mesh, case
        self.order = case.effective_element_order
        self.V = V = Space(mesh.points, mesh.cells, self.order)
        self.n_dofs = n = 3 * V.n_dofs
        dim, ents = _entities(mesh, INPUT_FACE, "geometry")
        inp = V.entity_dofs(dim, ents)
        input_dofs = np.concatenate([3 * inp + c for c in range(3)])
        self.input_z = 3 * inp + 2
        self.constrained = np.unique(np.concatenate([zero_dirichlet_dofs(mesh, case, V), input_dofs]))
        check_constrained(V.dof_coords, self.constrained, mesh.points)
        self.g = np.zeros(n)                                  # the unit input, 0 on other constraints
        self.g[self.input_z] = 1.0
        self.g[np.setdiff1d(self.constrained, input_dofs)] = 0.0
        self.free = np.setdiff1d(np.arange(n), self.constrained)
        self.volumes = volume_groups(mesh)
        self.mats = {nm: material_for(nm, materials) for nm in self.volumes}
        given = case.harmonic.loss_factor
        rho = cellwise(mesh, self.volumes, {k: m.density_kg_m3 for k, m in self.mats.items()})
        self.lam = cellwise(mesh, self.volumes, {k: m.lame_parameters()[0] for k, m in self.mats.items()})
        self.mu = cellwise(mesh, self.volumes, {k: m.lame_parameters()[1] for k, m in self.mats.items()})
        eta = cellwise(mesh, self.volumes, {k: given or m.loss_factor for k, m in self.mats.items()})
        self.K = V.assemble(V.elasticity_local(self.lam, self.mu), block=3)
        self.Keta = V.assemble(V.elasticity_local(self.lam * eta, self.mu * eta), block=3)
        self.M = V.assemble(vector_mass_local(V, rho), block=3)
        f = self.free
        self.K_ff = sp.csr_matrix(self.K)[f][:, f].tocsc()
        self.M_ff = sp.csr_matrix(self.M)[f][:, f].tocsc()
        self.lu = spla.splu(self.K_ff)
        facets = Facets(V, mesh.facets, mesh.facet_tags)
        idx = facets.select(group_tag(mesh.groups, OUTPUT_FACE, 2, "geometry"), True)
        w = facets.assemble_vector(idx, facets.load(idx, np.ones(V.n_dofs)), V.n_dofs)
        blocks = np.unique(facets.dofs[facets.tags == group_tag(mesh.groups, OUTPUT_FACE, 2, "geometry")])
        self.face_dofs = 3 * blocks + 2
        self.face_w = w[blocks]
        self.basis = np.zeros((n, 0))

    def _full(self, x_free: np.ndarray, fixed: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros(self.n_dofs) if fixed is None else fixed.copy()
        out[self.free] = x_free
        return out

    def _solve(self, rhs_free: np.ndarray, what: str) -> np.ndarray:
        x = self.lu.solve(rhs_free)
        if not np.isfinite(x).all():
            raise HarmonicSolverError(f"the LU solve of {what} failed: check the materials and constraints")
        return x

    def static_input(self) -> tuple[np.ndarray, np.ndarray]:
        """(ψ, χ): K ψ = 0 at the free dofs with ψ = e_z on input_face; K_ff χ = (Mψ)_f."""
        psi = self._full(self._solve(-(self.K @ self.g)[self.free], "the static input response"), self.g)
        chi = self._full(self._solve((self.M @ psi)[self.free], "the static residual"))
        return psi, chi

    def fixed_input_modes(self, cutoff_Hz: float, on_progress: ProgressCallback | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
        """(frequencies Hz, mass-normalised full-size modes (n, k)) of every fixed-input mode
        up to cutoff_Hz, ascending."""
        nev = max(32, 2 * self.case.solver.modes_wanted)
        n_free = len(self.free)
        while True:
            k = min(nev, n_free - 1)
            lam, X, _ = eigen_near(self.K_ff, self.M_ff, k, 0.0, what=" on the fixed-input modes")
            order = np.argsort(lam)
            lam, X = lam[order], X[:, order]
            top = np.sqrt(max(lam[-1], 0.0)) / (2 * np.pi) if len(lam) else 0.0
            if on_progress is not None:
                on_progress(1, 0.0, 30.0, PHASE, f"{len(lam)} fixed-input modes, highest {top:.0f} Hz "
                            f"(cut-off {cutoff_Hz:.0f} Hz)", 0.0)
            if top > cutoff_Hz or k >= n_free - 1:
                break
            if nev >= MAX_MODES:
                raise HarmonicSolverError(f"more than {MAX_MODES} modes lie below {cutoff_Hz:.0f} Hz: "
                                          "narrow harmonic.frequency_range_Hz or coarsen the mesh")
            nev = min(MAX_MODES, max(nev + 8, int(np.ceil(1.3 * nev * cutoff_Hz / max(top, 1e-3 * cutoff_Hz)))))
        f = np.sqrt(np.maximum(lam, 0.0)) / (2 * np.pi)
        keep = f <= cutoff_Hz
        X = X[:, keep]
        X = X / np.sqrt(np.einsum("ij,ij->j", X, self.M_ff @ X))
        modes = np.zeros((self.n_dofs, X.shape[1]))
        modes[self.free] = X
        return f[keep], modes

    def modal_basis(self, cutoff_Hz: float, on_progress: ProgressCallback | None = None) -> None:
        """ψ, the modes up to cutoff_Hz and the residual r; their modal data."""
        psi, chi = self.static_input()
        freqs, Phi = self.fixed_input_modes(cutoff_Hz, on_progress)
        Mpsi = self.M @ psi
        k = np.einsum("ij,ij->j", Phi, self.K @ Phi)
        self.eta_i = np.einsum("ij,ij->j", Phi, self.Keta @ Phi) / k if len(k) else np.zeros(0)
        self.p = Phi.T @ Mpsi
        r = chi - Phi @ (self.p / k)
        kr = float(r @ (self.K @ r))
        self.eta_r = float(r @ (self.Keta @ r)) / kr if kr > 0 else 0.0
        self.mode_freqs = freqs
        self.omega_i = 2 * np.pi * freqs
        self.basis = np.column_stack([psi, Phi, r])
        self.face_B = self.basis[self.face_dofs]
        self.react = np.stack([psi @ (A @ self.basis) for A in (self.K, self.Keta, self.M)])

    def coefficients(self, freqs_Hz: np.ndarray) -> np.ndarray:
        return modal_coefficients(freqs_Hz, self.omega_i, self.p, self.eta_i, self.eta_r)

    def face_stats(self, face_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Complex face u_z (n_face, n_freq) -> (mean |u_z|, min/max, phase of mean u_z deg)."""
        mag = np.abs(face_values)
        w = self.face_w
        return (w @ mag) / w.sum(), mag.min(axis=0) / mag.max(axis=0), np.degrees(np.angle(w @ face_values))

    def response(self, freqs_Hz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per unit input: (gain, uniformity, output phase deg, complex drive force N/m)."""
        freqs_Hz = np.atleast_1d(np.asarray(freqs_Hz, dtype=float))
        C = self.coefficients(freqs_Hz)
        gain, unif, phase = self.face_stats(self.face_B @ C.T)
        k, keta, m = self.react
        force = C @ k + 1j * (C @ keta) - (2 * np.pi * freqs_Hz) ** 2 * (C @ m)
        return gain, unif, phase, force

    def fields(self, frequency_Hz: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """(Re û, Im û), (n_dofs, 3) each, for an input amplitude `scale` (m)."""
        c = scale * self.coefficients(np.array([frequency_Hz]))[0]
        return (self.basis @ c.real).reshape(-1, 3), (self.basis @ c.imag).reshape(-1, 3)

    def direct(self, frequency_Hz: float) -> tuple[np.ndarray, np.ndarray]:
        """(Re u, Im u) per unit input from a direct solve of K(1 + iη) − ω²M, i.e.
        (K − ω²M + iK_η) u = 0 at the free dofs, on the free dofs (complex sparse LU; for
        checks — the fenicsx backend solves the same system as a real 2×2 block)."""
        f = self.free
        A = (self.K - (2 * np.pi * frequency_Hz) ** 2 * self.M + 1j * self.Keta).tocsr()
        x = spla.splu(A[f][:, f].tocsc()).solve(-(A @ self.g)[f])
        return self._full(x.real, self.g), self._full(x.imag)

    def direct_response(self, frequency_Hz: float) -> tuple[float, float, complex]:
        """(gain, uniformity, drive force per unit input) of the direct solve."""
        xr, xi = self.direct(frequency_Hz)
        face = (xr[self.face_dofs] + 1j * xi[self.face_dofs])[:, None]
        gain, unif, _ = self.face_stats(face)
        parts = [complex((A @ xr)[self.input_z].sum(), (A @ xi)[self.input_z].sum())
                 for A in (self.K, self.Keta, self.M)]
        force = parts[0] + 1j * parts[1] - (2 * np.pi * frequency_Hz) ** 2 * parts[2]
        return float(gain[0]), float(unif[0]), force


# --- stresses -------------------------------------------------------------------------------
def _stress(problem: HarmonicProblem, u: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """σ (m, nq, 3, 3) of a displacement (n_dofs, 3) at reference points xi of every cell."""
    V = problem.V
    grad = np.einsum("caj,cqai->cqji", u[V.cell_dofs], V.grads(xi))
    eps = 0.5 * (grad + np.swapaxes(grad, -1, -2))
    tr = np.trace(eps, axis1=-2, axis2=-1)
    return 2 * problem.mu[:, None, None, None] * eps + (problem.lam[:, None] * tr)[..., None, None] * np.eye(3)


def cycle_von_mises(problem: HarmonicProblem, ur: np.ndarray, ui: np.ndarray) -> np.ndarray:
    """Cellwise (midpoint) peak von Mises over one cycle of Re[(ur + i ui) e^{iωt}], Pa."""
    mid = np.full((1, 3), 0.25)
    dev = lambda s: s - np.trace(s, axis1=-2, axis2=-1)[..., None, None] / 3 * np.eye(3)  # noqa: E731
    sr, si = dev(_stress(problem, ur, mid)[:, 0]), dev(_stress(problem, ui, mid)[:, 0])
    dot = lambda a, b: np.einsum("cij,cij->c", a, b)  # noqa: E731
    return np.sqrt(1.5 * cycle_peak_sq(dot(sr, sr), dot(si, si), dot(sr, si)))


def solve_harmonic(mesh: Any, case: CaseSpec, materials: Mapping[str, Material], *,
                   f_working_Hz: float, on_progress: ProgressCallback | None = None) -> HarmonicResult:
    """The base-excited response of `case` at f_working_Hz (the free-free working frequency)
    and over harmonic.frequency_range_Hz. Raises WeldSimError, HarmonicSolverError."""
    if not (np.isfinite(f_working_Hz) and f_working_Hz > 0):
        raise WeldSimError(f"f_working_Hz must be a positive frequency, got {f_working_Hz!r}")
    settings = case.harmonic
    lo, hi = settings.frequency_range_Hz or (f_working_Hz * (1 - DEFAULT_SPAN), f_working_Hz * (1 + DEFAULT_SPAN))
    freqs = np.linspace(lo, hi, settings.frequency_points)
    cutoff = MODE_CUTOFF * max(hi, f_working_Hz)
    problem = HarmonicProblem(mesh, case, materials)
    if on_progress is not None:
        on_progress(1, 0.0, 5.0, PHASE, "static input response and fixed-input modes", 0.0)
    problem.modal_basis(cutoff, on_progress)
    gain_w, unif_w, _, force_w = problem.response(np.array([f_working_Hz]))
    gain_w, unif_w = float(gain_w[0]), float(unif_w[0])
    if not gain_w > 0:
        raise HarmonicSolverError(f"the output face does not move at {f_working_Hz:g} Hz (gain {gain_w:g})")
    U = settings.output_amplitude_0pk_m / gain_w
    gain, _, phase, force = problem.response(freqs)
    curves = HarmonicCurves(freqs, gain, phase, U * np.abs(force), np.degrees(np.angle(force)), U)
    if on_progress is not None:
        on_progress(1, 0.0, 80.0, PHASE, f"response at {len(freqs)} frequencies; stresses", 0.0)
    ur, ui = problem.fields(f_working_Hz, U)
    vm = cycle_von_mises(problem, ur, ui)
    nodes = np.full((1, 3), 0.25) if problem.order == 1 else reference_nodes(1)
    stress_nodes = _stress(problem, ur, nodes)
    peaks = {n: float(vm[mesh.cell_tags == tag].max(initial=0.0)) for n, tag in problem.volumes.items()}
    fatigue = min(problem.mats[n].fatigue_strength_Pa / p for n, p in peaks.items() if p > 0)
    over_yield = max(p / problem.mats[n].yield_strength_Pa for n, p in peaks.items())
    sq = cycle_peak_sq(np.einsum("ij,ij->i", ur, ur), np.einsum("ij,ij->i", ui, ui), np.einsum("ij,ij->i", ur, ui))
    warnings = []
    if over_yield > 1:
        warnings.append(f"the peak von Mises stress is {over_yield:.2f} × the yield strength at "
                        f"{settings.output_amplitude_0pk_m * 1e6:g} µm output amplitude")
    result = HarmonicResult(
        f_working_Hz=float(f_working_Hz), gain=gain_w, uniformity=unif_w, input_amplitude_0pk_m=float(U),
        output_amplitude_0pk_m=float(settings.output_amplitude_0pk_m), max_von_mises_Pa=max(peaks.values()),
        max_von_mises_by_volume_Pa=peaks, fatigue_safety_factor=float(fatigue),
        von_mises_over_yield=float(over_yield), max_displacement_m=float(np.sqrt(sq.max(initial=0.0))),
        input_force_0pk_N=float(U * abs(force_w[0])), curves=curves, space=problem.V, displacement=ur,
        displacement_imag=ui, von_mises_dg0=vm, stress_nodes=stress_nodes,
        mode_frequencies_Hz=problem.mode_freqs.copy(), cutoff_Hz=float(cutoff), n_dofs=problem.n_dofs,
        warnings=tuple(warnings))
    if on_progress is not None:
        on_progress(1, 0.0, 100.0, PHASE, f"gain {result.gain:.4f} at {f_working_Hz:.1f} Hz "
                    f"({len(result.mode_frequencies_Hz)} modes up to {cutoff:.0f} Hz)", 0.0)
    return result
