"""Harmonic base excitation by modal superposition on dolfinx 0.5 + SLEPc (collective, MPI).

The input face moves axially, u = U·cos ωt·e_z (U 0-peak, m), with every component
prescribed there (which also removes the rigid-body motion); fixed/displacement groups of
the case are extra homogeneous constraints (prescribed values ignored, as in modal.py).
Hysteretic damping K(1 + iη). Only the modal coordinates are complex (real PETSc):

    u(ω)/U = ψ + Σᵢ φᵢ qᵢ(ω) + ω²/(1 + iη_r) · r
    qᵢ(ω)  = ω² pᵢ / (ωᵢ²(1 + iηᵢ) − ω²),      pᵢ = φᵢᵀ M ψ

ψ: static response to a unit axial input (K ψ = 0 at the free dofs, ψ = e_z on input_face;
the rigid translation when nothing else is constrained). φᵢ: mass-normalised modes with
the input dofs fixed, EVERY mode up to MODE_CUTOFF × the top drive frequency (SLEPc
shift-and-invert at target 0: the nev lowest modes, nev raised until the highest returned
mode lies above the cut-off). r: the static residual of the modes left out ("mode
acceleration"), r = K_ff⁻¹(Mψ)_f − Σᵢ φᵢ pᵢ/ωᵢ², i.e. the ω → 0 limit of the truncated tail
Σ_{i>N} φᵢ ω² pᵢ/ωᵢ². Why both: the participation of a displacement-driven bar's modes
falls off only as 1/(2n−1), so a sum cut at 2 f_max misses 3.7 % of the gain at f₁; the
residual brings that to 0.7 %, and the cut at 3 f_max (modes up to 2.5 f₁ for a bar) to
≈ 0.1 %. ηᵢ = φᵢᵀK_ηφᵢ / φᵢᵀKφᵢ (modal strain-energy loss factor, K_η = ∫η σ:ε with η per
volume; exactly η for one material), η_r likewise for r; case.harmonic.loss_factor, when
given, overrides every material's η.

Reported at f_working (the free-free working frequency, passed in), Hz, m, Pa, N:
- gain = mean over output_face of |u_z| / U, the mean being ∫ I_h|u_z| dA / A with I_h the
  nodal (order-p) interpolant: Σⱼ wⱼ|u_z,j| / Σⱼ wⱼ, wⱼ = ∫ Nⱼ dA over the face nodes j;
- uniformity = min / max of |u_z| over the output-face nodes;
- U_in = output_amplitude_0pk_m / gain, and with it every field and stress below;
- peak von Mises over a cycle: σ(t) = Re[σ̂ e^{iωt}] = σ_r cos ωt − σ_i sin ωt, with
  a = s_r:s_r, b = s_i:s_i, c = s_r:s_i (s the deviators) the closed form
  max_t s:s = (a + b)/2 + √(((a − b)/2)² + c²), σ_vm = √(3/2 · max); cellwise at the cell
  midpoints (as elasticity.py), max_von_mises_Pa their maximum; the fatigue safety factor
  is min over volumes of fatigue strength / that volume's peak;
- the drive force (N, complex; what the booster applies on input_face along +z): the
  reaction Σ over the input dofs' z rows of [(K + iK_η − ω²M) u], evaluated as the weighted
  residual F(ω) = U·ψᵀ[K + iK_η − ω²M](ψ + Σᵢφᵢqᵢ + c_r r). Both agree at the exact solution
  (the residual vanishes at the free dofs and ψ is e_z on the input dofs, 0 on other
  constrained ones), but the ψ-weighted form converges with the modal truncation (errors
  weighted by ψᵀM) whereas the raw input rows weight them by K (at f₁ of a bar the raw
  rows were off by a factor 600 against the direct solve). ψᵀKφᵢ = 0 (Kψ vanishes at the
  free dofs); for a free horn ψ = e_z and F = −ω²∫ρ u_z dV (momentum balance).
Curves over harmonic.frequency_range_Hz (default f_working ± DEFAULT_SPAN), frequency_points
points: gain, output phase, |F| and its phase for the scaled U_in.

Public API::

    solve_harmonic(fmesh, comm, case, materials, *, f_working_Hz, on_progress=None) -> HarmonicResult
    HarmonicProblem(fmesh, comm, case, materials)     .modal_basis(cutoff_Hz) / .response(freqs)
        / .direct(frequency_Hz) (the 2×2 real block solve, for checks) / .destroy()
    HarmonicResult, HarmonicCurves, HarmonicSolverError, cycle_peak_sq, modal_coefficients
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ...case import CaseSpec
from ...errors import SolverError, WeldSimError
from ...geometry.groups import INPUT_FACE, OUTPUT_FACE
from ...materials import Material
from ...physics import structural as phys
from . import compat
from .elasticity import _dirichlet_entities, check_constrained
from .modal import _properties, _zero_dirichlet
from .thermal import _group_tag, _material_for

ProgressCallback = Callable[[int, float, float, str, str, float], None]
MODE_CUTOFF = 3.0        # modes up to this × the top drive frequency (≥ 2 by the design)
DEFAULT_SPAN = 0.10      # curve range f_working·(1 ± this) when frequency_range_Hz is unset
EPS_TOL = 1e-10
MAX_MODES = 800
PHASE = "harmonic"


class HarmonicSolverError(SolverError):
    """The eigen- or linear solves of the harmonic analysis failed."""


# --- pure helpers --------------------------------------------------------------------
def modal_coefficients(freqs_Hz: np.ndarray, omega_i: np.ndarray, p: np.ndarray, eta_i: np.ndarray,
                       eta_r: float) -> np.ndarray:
    """(n_freq, 2 + n_modes) complex coefficients of [ψ, φ₁..φ_N, r] per unit input."""
    w2 = (2 * np.pi * np.asarray(freqs_Hz, dtype=float))[:, None] ** 2
    q = w2 * p[None, :] / (omega_i[None, :] ** 2 * (1 + 1j * eta_i[None, :]) - w2)
    return np.hstack([np.ones_like(w2, dtype=complex), q, w2 / (1 + 1j * eta_r)])


def cycle_peak_sq(a: Any, b: Any, c: Any, sqrt: Callable[[Any], Any] = np.sqrt) -> Any:
    """max over t of |x_r cos t − x_i sin t|² given a = x_r·x_r, b = x_i·x_i, c = x_r·x_i
    (numpy arrays; UFL expressions with sqrt=ufl.sqrt)."""
    return (a + b) / 2 + sqrt(((a - b) / 2) ** 2 + c ** 2)


@dataclass
class HarmonicCurves:
    """Frequency response per frequency (arrays), for the scaled input amplitude."""

    frequency_Hz: np.ndarray
    gain: np.ndarray                    # mean |u_z| on output_face / U
    output_phase_deg: np.ndarray        # phase of the face-mean u_z against the input
    input_force_0pk_N: np.ndarray       # |F| for U = input_amplitude_0pk_m
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
    """What solve_harmonic returns (identical scalars on every rank). SI units."""

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
    displacement: Any              # Re û (scaled, order p) at f_working
    displacement_imag: Any         # Im û
    displacement_p1: Any           # Re û on vector P1 (XDMF)
    von_mises_dg0: Any             # cellwise peak over the cycle, Pa
    stress: Any                    # tensor DG(p−1) σ(Re û), Pa
    mode_frequencies_Hz: np.ndarray   # the fixed-input modes used
    cutoff_Hz: float
    n_dofs: int
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def stress_at(self, points: np.ndarray, comm: Any) -> np.ndarray:
        """Collective: (n, 6) components of σ(Re û) at points (mean over the touching cells)."""
        values = compat.evaluate_vector_at_points(self.stress, points, comm, average=True)
        return phys.tensor_to_voigt(values.reshape(-1, 3, 3))

    def metrics(self) -> dict[str, float]:
        """Registered metric names -> values."""
        return {"f_working_Hz": self.f_working_Hz, "gain": self.gain, "uniformity": self.uniformity,
                "input_amplitude_0pk_m": self.input_amplitude_0pk_m,
                "output_amplitude_0pk_m": self.output_amplitude_0pk_m,
                "max_von_mises_Pa": self.max_von_mises_Pa, "fatigue_safety_factor": self.fatigue_safety_factor,
                "von_mises_over_yield": self.von_mises_over_yield,
                "max_displacement_m": self.max_displacement_m, "n_dofs": float(self.n_dofs)}


class HarmonicProblem:
    """Spaces, constraints and the assembled K, M, K_η of a base-excited horn (collective)."""

    def __init__(self, fmesh: Any, comm: Any, case: CaseSpec, materials: Mapping[str, Material]):
        import ufl
        from dolfinx import fem
        from dolfinx.fem import petsc as fpetsc
        from petsc4py import PETSc

        self.fmesh, self.comm, self.case = fmesh, comm, case
        mesh = fmesh.mesh
        self.order = case.effective_element_order
        self.V = V = fem.VectorFunctionSpace(mesh, ("Lagrange", self.order))
        self.n_owned = V.dofmap.index_map.size_local
        dim, ents = _dirichlet_entities(fmesh, INPUT_FACE, "geometry")
        self.input_blocks = np.asarray(fem.locate_dofs_topological(V, dim, ents), dtype=np.int32)
        unit = fem.Function(V)
        unit.x.array.reshape(-1, 3)[self.input_blocks, 2] = 1.0
        other, constrained = _zero_dirichlet(fmesh, case, V)
        self.bcs = [fem.dirichletbc(unit, self.input_blocks)] + other
        self.bcs0 = [fem.dirichletbc(np.zeros(3, dtype=PETSc.ScalarType), self.input_blocks, V)] + other
        check_constrained(V, np.concatenate([constrained] + [3 * self.input_blocks.astype(np.int64) + c
                                                              for c in range(3)]), comm)
        self.rho, lam, mu = _properties(fmesh, comm, materials)
        self.volumes = {n: tag for n, (d, tag) in fmesh.groups.items() if d == 3}
        self.mats = {n: _material_for(n, materials) for n in self.volumes}
        eta = fem.Function(compat.dg0_space(mesh), name="loss_factor")
        given = case.harmonic.loss_factor
        compat.set_cellwise(eta, fmesh.cell_tags, {self.volumes[n]: given or m.loss_factor
                                                   for n, m in self.mats.items()})
        eps = lambda w: ufl.sym(ufl.grad(w))  # noqa: E731
        self.sigma = lambda w: 2 * mu * eps(w) + lam * ufl.tr(eps(w)) * ufl.Identity(3)
        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        self.k_form = fem.form(ufl.inner(self.sigma(u), eps(v)) * ufl.dx)
        self.m_form = fem.form(self.rho * ufl.inner(u, v) * ufl.dx)
        self.keta_form = fem.form(eta * ufl.inner(self.sigma(u), eps(v)) * ufl.dx)

        def mat(form, bcs=(), diagonal=1.0):
            A = fpetsc.assemble_matrix(form, bcs=list(bcs), diagonal=diagonal)
            A.assemble()
            return A
        self.K, self.M, self.Keta = mat(self.k_form), mat(self.m_form), mat(self.keta_form)
        self.K_bc, self.M_bc = mat(self.k_form, self.bcs), mat(self.m_form, self.bcs, 0.0)
        self.ksp = self._lu(self.K_bc)
        ds = ufl.Measure("ds", domain=mesh, subdomain_data=fmesh.facet_tags)
        out_tag = _group_tag(fmesh.groups, OUTPUT_FACE, 2, "geometry")
        w = fpetsc.assemble_vector(fem.form(v[2] * ds(out_tag)))
        w.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        mesh.topology.create_connectivity(2, 3)
        blocks = fem.locate_dofs_topological(V, 2, compat.tagged_entities(fmesh.facet_tags, out_tag))
        blocks = np.asarray(blocks[blocks < self.n_owned], dtype=np.int64)
        self.face_dofs = 3 * blocks + 2                       # owned z dofs on output_face
        self.face_w = w.array_r[self.face_dofs].copy()
        w.destroy()
        inp = self.input_blocks[self.input_blocks < self.n_owned].astype(np.int64)
        self.input_z = 3 * inp + 2                            # owned z dofs on input_face
        self.n_dofs = 3 * V.dofmap.index_map.size_global
        self.basis: list = []

    # --- linear algebra ------------------------------------------------------------------
    def _vec(self) -> Any:
        """A zero ghosted PETSc vector of V (apply_lifting writes into the ghosts)."""
        from dolfinx import la

        vec = la.create_petsc_vector(self.V.dofmap.index_map, self.V.dofmap.index_map_bs)
        vec.set(0.0)
        return vec

    def _lu(self, A: Any) -> Any:
        from petsc4py import PETSc

        ksp = PETSc.KSP().create(self.comm)
        ksp.setOperators(A)
        ksp.setType("preonly")
        ksp.getPC().setType("lu")
        ksp.getPC().setFactorSolverType("mumps")
        return ksp

    def _solve(self, ksp: Any, b: Any, what: str) -> Any:
        x = b.duplicate()
        ksp.solve(b, x)
        if ksp.getConvergedReason() <= 0:
            raise HarmonicSolverError(f"the LU solve of {what} failed (PETSc reason "
                                      f"{ksp.getConvergedReason()}): check the materials and constraints")
        return x

    def static_input(self) -> tuple[Any, Any]:
        """(ψ, χ): K ψ = 0 with ψ = e_z on input_face; K_ff χ = (Mψ)_f, χ = 0 there."""
        from dolfinx.fem import petsc as fpetsc
        from petsc4py import PETSc

        b = self._vec()
        fpetsc.apply_lifting(b, [self.k_form], [self.bcs])
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        fpetsc.set_bc(b, self.bcs)
        psi = self._solve(self.ksp, b, "the static input response")
        self.M.mult(psi, b)
        fpetsc.set_bc(b, self.bcs0)
        chi = self._solve(self.ksp, b, "the static residual")
        b.destroy()
        return psi, chi

    def fixed_input_modes(self, cutoff_Hz: float, on_progress: ProgressCallback | None = None) -> list:
        """[(f_Hz, mass-normalised PETSc Vec)] of every fixed-input mode up to cutoff_Hz."""
        from petsc4py import PETSc
        from slepc4py import SLEPc

        eps = SLEPc.EPS().create(self.comm)
        eps.setOperators(self.K_bc, self.M_bc)
        eps.setProblemType(SLEPc.EPS.ProblemType.GHEP)
        eps.setType(SLEPc.EPS.Type.KRYLOVSCHUR)
        eps.setTarget(0.0)
        eps.setWhichEigenpairs(SLEPc.EPS.Which.TARGET_MAGNITUDE)
        eps.setTolerances(tol=EPS_TOL, max_it=500)
        st = eps.getST()
        st.setType(SLEPc.ST.Type.SINVERT)
        st.getKSP().setType("preonly")
        st.getKSP().getPC().setType("lu")
        st.getKSP().getPC().setFactorSolverType("mumps")
        nev = max(32, 2 * self.case.solver.modes_wanted)
        vr = self.K_bc.createVecRight()
        try:
            while True:
                eps.setDimensions(nev=nev)
                try:
                    eps.solve()
                except PETSc.Error as exc:
                    raise HarmonicSolverError(
                        f"SLEPc failed on the fixed-input modes (PETSc error {exc.ierr})") from exc
                n_conv = eps.getConverged()
                lam = np.sort([eps.getEigenvalue(i).real for i in range(n_conv)])[:nev]
                top = np.sqrt(max(lam[-1], 0.0)) / (2 * np.pi) if len(lam) else 0.0
                if on_progress is not None:
                    on_progress(1, 0.0, 30.0, PHASE, f"{n_conv} fixed-input modes, highest {top:.0f} Hz "
                                f"(cut-off {cutoff_Hz:.0f} Hz)", 0.0)
                if n_conv >= nev and top > cutoff_Hz:
                    break
                if n_conv < nev:
                    raise HarmonicSolverError(f"SLEPc converged {n_conv} of {nev} fixed-input modes")
                if nev >= MAX_MODES:
                    raise HarmonicSolverError(f"more than {MAX_MODES} modes lie below {cutoff_Hz:.0f} Hz: "
                                              "narrow harmonic.frequency_range_Hz or coarsen the mesh")
                # a slender horn's mode count grows about linearly with frequency
                nev = min(MAX_MODES, max(nev + 8, int(np.ceil(1.3 * nev * cutoff_Hz / max(top, 1e-3 * cutoff_Hz)))))
            modes = []
            Mv = self.M_bc.createVecLeft()
            for i in range(n_conv):
                f = float(np.sqrt(max(eps.getEigenpair(i, vr).real, 0.0)) / (2 * np.pi))
                if f <= cutoff_Hz:
                    self.M_bc.mult(vr, Mv)
                    phi = vr.copy()
                    phi.scale(1.0 / np.sqrt(vr.dot(Mv)))
                    modes.append((f, phi))
            Mv.destroy()
        finally:
            vr.destroy()
            eps.destroy()
        return sorted(modes, key=lambda m: m[0])

    # --- the modal basis -----------------------------------------------------------------
    def modal_basis(self, cutoff_Hz: float, on_progress: ProgressCallback | None = None) -> None:
        """Collective: ψ, the modes up to cutoff_Hz and the residual r; their modal data."""
        psi, chi = self.static_input()
        modes = self.fixed_input_modes(cutoff_Hz, on_progress)
        Mpsi = psi.duplicate()
        self.M.mult(psi, Mpsi)
        tmp = psi.duplicate()
        freqs, p, eta = [], [], []
        r = chi.copy()
        for f, phi in modes:
            self.K.mult(phi, tmp)
            k = phi.dot(tmp)
            self.Keta.mult(phi, tmp)
            eta.append(phi.dot(tmp) / k)
            freqs.append(f)
            p.append(phi.dot(Mpsi))
            r.axpy(-p[-1] / k, phi)                        # k = ωᵢ² (φᵀMφ = 1)
        self.K.mult(r, tmp)
        kr = r.dot(tmp)
        self.Keta.mult(r, tmp)
        self.eta_r = r.dot(tmp) / kr if kr > 0 else 0.0
        self.mode_freqs = np.array(freqs)
        self.omega_i, self.p, self.eta_i = 2 * np.pi * self.mode_freqs, np.array(p), np.array(eta)
        self.basis = [psi] + [phi for _, phi in modes] + [r]
        # face values and input-row reactions of every basis vector
        self.face_B = np.column_stack([b.array_r[self.face_dofs] for b in self.basis])
        self.react = np.zeros((3, len(self.basis)))      # ψᵀK b, ψᵀK_η b, ψᵀM b (collective dots)
        for row, A in enumerate((self.K, self.Keta, self.M)):
            A.mult(psi, tmp)
            self.react[row] = [tmp.dot(b) for b in self.basis]
        for vec in (Mpsi, tmp, chi):
            vec.destroy()

    def coefficients(self, freqs_Hz: np.ndarray) -> np.ndarray:
        return modal_coefficients(freqs_Hz, self.omega_i, self.p, self.eta_i, self.eta_r)

    def face_stats(self, face_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Complex owned face u_z (n_face, n_freq) -> (mean |u_z|, min/max, phase of mean u_z)."""
        from mpi4py import MPI

        mag = np.abs(face_values)
        sums = self.comm.allreduce(np.concatenate([self.face_w @ mag, (self.face_w @ face_values).view(float),
                                                   [self.face_w.sum()]]))
        n = mag.shape[1]
        lo, hi = np.empty(n), np.empty(n)
        self.comm.Allreduce(np.ascontiguousarray(mag.min(axis=0, initial=np.inf)), lo, op=MPI.MIN)
        self.comm.Allreduce(np.ascontiguousarray(mag.max(axis=0, initial=0.0)), hi, op=MPI.MAX)
        mean_c = sums[n:3 * n].view(complex)
        return sums[:n] / sums[-1], lo / hi, np.degrees(np.angle(mean_c))

    def response(self, freqs_Hz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per unit input: (gain, uniformity, output phase deg, complex drive force N/m)."""
        freqs_Hz = np.atleast_1d(np.asarray(freqs_Hz, dtype=float))
        C = self.coefficients(freqs_Hz)
        gain, unif, phase = self.face_stats(self.face_B @ C.T)
        w2 = (2 * np.pi * freqs_Hz) ** 2
        k, keta, m = self.react
        force = C @ k + 1j * (C @ keta) - w2 * (C @ m)
        return gain, unif, phase, force

    def fields(self, frequency_Hz: float, scale: float) -> tuple[Any, Any]:
        """(Re û, Im û) as Functions for an input amplitude `scale` (m)."""
        from dolfinx import fem

        c = scale * self.coefficients(np.array([frequency_Hz]))[0]
        out = []
        for part, name in ((c.real, "displacement"), (c.imag, "displacement_imag")):
            u = fem.Function(self.V, name=name)
            vec = compat.petsc_vector(u)
            vec.set(0.0)
            for cj, b in zip(part, self.basis):
                vec.axpy(float(cj), b)
            u.x.scatter_forward()
            out.append(u)
        return out[0], out[1]

    # --- the reference: a direct solve of K(1 + iη) − ω²M as a real 2×2 block system -----
    def direct(self, frequency_Hz: float) -> tuple[Any, Any]:
        """Collective: (Re u, Im u) PETSc Vecs per unit input from [[A, −K_η], [K_η, A]],
        A = K − ω²M, input Dirichlet conditions, MUMPS LU (for checks: costly)."""
        import ufl
        from dolfinx import fem
        from dolfinx.fem import petsc as fpetsc
        from petsc4py import PETSc

        w2 = (2 * np.pi * frequency_Hz) ** 2
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        a_form = fem.form(ufl.inner(self.sigma(u), ufl.sym(ufl.grad(v))) * ufl.dx
                          - w2 * self.rho * ufl.inner(u, v) * ufl.dx)
        A = fpetsc.assemble_matrix(a_form, bcs=self.bcs, diagonal=1.0)
        A.assemble()
        E = fpetsc.assemble_matrix(self.keta_form, bcs=self.bcs, diagonal=0.0)
        E.assemble()
        mE = E.copy()
        mE.scale(-1.0)
        block = PETSc.Mat().createNest([[A, mE], [E, A]], comm=self.comm)
        block = block.convert("aij")
        rhs = []
        for form, scale in ((a_form, 1.0), (self.keta_form, 0.0)):   # real: u = e_z; imag: u = 0
            b = self._vec()
            fpetsc.apply_lifting(b, [form], [self.bcs])
            b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            fpetsc.set_bc(b, self.bcs, scale=scale)
            rhs.append(b)
        b = block.createVecLeft()        # the AIJ rows of a converted nest: each rank's
        b.array[:] = np.concatenate([r.array_r for r in rhs])   # block-0 rows, then block-1
        ksp = self._lu(block)
        x = self._solve(ksp, b, f"the direct block system at {frequency_Hz:g} Hz")
        n = rhs[0].getLocalSize()
        xr, xi = rhs[0].duplicate(), rhs[0].duplicate()
        xr.array[:], xi.array[:] = x.array_r[:n], x.array_r[n:]
        for obj in (A, E, mE, block, b, x, ksp, *rhs):
            obj.destroy()
        return xr, xi

    def direct_response(self, frequency_Hz: float) -> tuple[float, float, complex]:
        """(gain, uniformity, drive force per unit input) of the direct solve."""
        xr, xi = self.direct(frequency_Hz)
        face = (xr.array_r[self.face_dofs] + 1j * xi.array_r[self.face_dofs])[:, None]
        gain, unif, _ = self.face_stats(face)
        tmp = xr.duplicate()
        parts = []
        for A in (self.K, self.Keta, self.M):
            A.mult(xr, tmp)
            re = tmp.array_r[self.input_z].sum()
            A.mult(xi, tmp)
            parts.append(complex(re, tmp.array_r[self.input_z].sum()))
        force = self.comm.allreduce(parts[0] + 1j * parts[1] - (2 * np.pi * frequency_Hz) ** 2 * parts[2])
        for vec in (xr, xi, tmp):
            vec.destroy()
        return float(gain[0]), float(unif[0]), force

    def destroy(self) -> None:
        for obj in (self.K, self.M, self.Keta, self.K_bc, self.M_bc, self.ksp, *self.basis):
            obj.destroy()
        self.basis = []



# --- the analysis ------------------------------------------------------------------------
def _cell_peaks(problem: HarmonicProblem, vm: Any) -> dict[str, float]:
    from mpi4py import MPI

    n_cells = problem.fmesh.mesh.topology.index_map(3).size_local
    cell_vm = vm.x.array[compat.cell_dofs(vm.function_space)[:n_cells, 0]]
    local = []
    for tag in problem.volumes.values():
        cells = compat.tagged_entities(problem.fmesh.cell_tags, tag)
        local.append(cell_vm[cells[cells < n_cells]].max(initial=0.0))
    peaks = np.empty(len(local))
    problem.comm.Allreduce(np.array(local, dtype=float), peaks, op=MPI.MAX)
    return dict(zip(problem.volumes, map(float, peaks)))


def _stress_fields(problem: HarmonicProblem, ur: Any, ui: Any) -> tuple[Any, Any]:
    """(cellwise peak von Mises over the cycle, tensor DG(p−1) σ(ur))."""
    import ufl
    from dolfinx import fem

    mesh = problem.fmesh.mesh
    dev = lambda s: s - ufl.tr(s) / 3 * ufl.Identity(3)  # noqa: E731
    sr, si = dev(problem.sigma(ur)), dev(problem.sigma(ui))
    peak = cycle_peak_sq(ufl.inner(sr, sr), ufl.inner(si, si), ufl.inner(sr, si), ufl.sqrt)
    Q0 = compat.dg0_space(mesh)
    vm = fem.Function(Q0, name="von_mises")
    vm.interpolate(fem.Expression(ufl.sqrt(1.5 * peak), compat.interpolation_points(Q0)))
    S = fem.TensorFunctionSpace(mesh, ("DG", problem.order - 1))
    stress = fem.Function(S, name="stress")
    stress.interpolate(fem.Expression(problem.sigma(ur), compat.interpolation_points(S)))
    return vm, stress


def _max_amplitude(problem: HarmonicProblem, ur: Any, ui: Any) -> float:
    """Largest 0-peak |u(t)| over the dof nodes and the cycle (m)."""
    from mpi4py import MPI

    n = problem.n_owned
    a, b = ur.x.array[:3 * n].reshape(-1, 3), ui.x.array[:3 * n].reshape(-1, 3)
    sq = cycle_peak_sq(np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b), np.einsum("ij,ij->i", a, b))
    return float(np.sqrt(problem.comm.allreduce(float(sq.max(initial=0.0)), op=MPI.MAX)))


def solve_harmonic(fmesh: Any, comm: Any, case: CaseSpec, materials: Mapping[str, Material], *,
                   f_working_Hz: float, on_progress: ProgressCallback | None = None) -> HarmonicResult:
    """Collective: the base-excited response of `case` (see the module docstring).

    f_working_Hz: the working frequency of the free-free modal run (Hz), where gain,
    uniformity and stress are reported. Raises WeldSimError (bad groups, constraints),
    HarmonicSolverError (eigen/LU failures, a zero output amplitude).
    """
    from dolfinx import fem

    if not (np.isfinite(f_working_Hz) and f_working_Hz > 0):
        raise WeldSimError(f"f_working_Hz must be a positive frequency, got {f_working_Hz!r}")
    settings = case.harmonic
    lo, hi = settings.frequency_range_Hz or (f_working_Hz * (1 - DEFAULT_SPAN), f_working_Hz * (1 + DEFAULT_SPAN))
    freqs = np.linspace(lo, hi, settings.frequency_points)
    cutoff = MODE_CUTOFF * max(hi, f_working_Hz)
    problem = HarmonicProblem(fmesh, comm, case, materials)
    try:
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
        vm, stress = _stress_fields(problem, ur, ui)
        peaks = _cell_peaks(problem, vm)
        u1 = ur
        if problem.order != 1:
            u1 = fem.Function(fem.VectorFunctionSpace(fmesh.mesh, ("Lagrange", 1)), name="displacement")
            compat.interpolate_function(u1, ur)
        fatigue = min(problem.mats[n].fatigue_strength_Pa / p for n, p in peaks.items() if p > 0)
        over_yield = max(p / problem.mats[n].yield_strength_Pa for n, p in peaks.items())
        warnings = []
        if over_yield > 1:
            warnings.append(f"the peak von Mises stress is {over_yield:.2f} × the yield strength at "
                            f"{settings.output_amplitude_0pk_m * 1e6:g} µm output amplitude")
        result = HarmonicResult(
            f_working_Hz=float(f_working_Hz), gain=gain_w, uniformity=unif_w, input_amplitude_0pk_m=float(U),
            output_amplitude_0pk_m=float(settings.output_amplitude_0pk_m),
            max_von_mises_Pa=max(peaks.values()), max_von_mises_by_volume_Pa=peaks,
            fatigue_safety_factor=float(fatigue), von_mises_over_yield=float(over_yield),
            max_displacement_m=_max_amplitude(problem, ur, ui), input_force_0pk_N=float(U * abs(force_w[0])),
            curves=curves, displacement=ur, displacement_imag=ui, displacement_p1=u1, von_mises_dg0=vm,
            stress=stress, mode_frequencies_Hz=problem.mode_freqs.copy(), cutoff_Hz=float(cutoff),
            n_dofs=int(problem.n_dofs), warnings=tuple(warnings))
    finally:
        problem.destroy()
    if on_progress is not None:
        on_progress(1, 0.0, 100.0, PHASE, f"gain {result.gain:.4f} at {f_working_Hz:.1f} Hz "
                    f"({len(result.mode_frequencies_Hz)} modes up to {cutoff:.0f} Hz)", 0.0)
    return result
