"""The baseline: a bare dolfinx + SLEPc free-free modal solve, with no WeldSim code.

Run under MPI on a mesh directory written by `weldsim_hpc.mesh.write_mesh_dir`
(mesh.xdmf + mesh.h5; only the "mesh" grid is read, the tags are ignored)::

    mpirun -n 2 .venv/bin/python benchmarks/bare_slepc_modal.py MESH_DIR --order 2 \
        --E 113.8e9 --nu 0.342 --rho 4430 --target 20000 --nev 12 --repeats 3 --json out.json

What is timed (wall, max over ranks, between barriers), once per repeat after one
untimed warm-up of the same work (JIT cache and first-touch costs):
mesh read (XDMFFile.read_mesh) + vector P-order space + plain ufl elasticity forms
(constant E, ν, ρ) + K and M assembly + EPS solve (Krylov–Schur, GHEP, ST sinvert,
KSP preonly + LU MUMPS, target (2π f_t)², TARGET_MAGNITUDE, nev modes, tol 1e-10,
max_it 500) + reading the eigenpairs back. The six rigid-body modes (3 translations,
3 rotations about the bounding-box centre, from the dof coordinates) are handed to
EPSSetDeflationSpace unorthogonalised: SLEPc orthonormalises the deflation space
itself. The working frequency (reported, outside the timed work) is the converged mode
nearest the target whose nodal displacement is mostly axial (Σu_z² / Σ|u|² > 0.5).

Writes one JSON object (rank 0) with the timings, the frequencies and the dof count.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mesh_dir")
    p.add_argument("--order", type=int, default=2)
    p.add_argument("--E", type=float, required=True, help="Young's modulus, Pa")
    p.add_argument("--nu", type=float, required=True, help="Poisson's ratio")
    p.add_argument("--rho", type=float, required=True, help="density, kg/m^3")
    p.add_argument("--target", type=float, default=20000.0, help="target frequency, Hz")
    p.add_argument("--nev", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3, help="timed repeats after the warm-up "
                   "(0: time the single, cold-ish first solve)")
    p.add_argument("--json", default=None, help="write the result here (rank 0)")
    return p.parse_args(argv)


def rigid_modes(V, comm, A):
    """Six PETSc vectors: translations and rotations about the bounding-box centre."""
    from mpi4py import MPI

    n_owned = V.dofmap.index_map.size_local
    x = V.tabulate_dof_coordinates()[:n_owned]
    lo, hi = np.empty(3), np.empty(3)
    comm.Allreduce(x.min(axis=0) if len(x) else np.full(3, np.inf), lo, op=MPI.MIN)
    comm.Allreduce(x.max(axis=0) if len(x) else np.full(3, -np.inf), hi, op=MPI.MAX)
    p = x - 0.5 * (lo + hi)
    out = []
    for k in range(6):
        v = A.createVecRight()
        r = np.zeros((n_owned, 3))
        if k < 3:
            r[:, k] = 1.0
        else:
            r[:] = np.cross(np.eye(3)[k - 3], p)
        v.array[:] = r.ravel()
        out.append(v)
    return out


def solve_once(args, comm):
    """The timed work: (frequencies Hz, owned eigenvector arrays, n_dofs, n_cells, EPS stats)."""
    import ufl
    from dolfinx import fem, io
    from dolfinx.fem import petsc as fpetsc
    from petsc4py import PETSc
    from slepc4py import SLEPc

    with io.XDMFFile(comm, f"{args.mesh_dir}/mesh.xdmf", "r") as xf:
        mesh = xf.read_mesh(name="mesh")
    V = fem.VectorFunctionSpace(mesh, ("Lagrange", args.order))
    mu = args.E / (2 * (1 + args.nu))
    lam = args.E * args.nu / ((1 + args.nu) * (1 - 2 * args.nu))
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)

    def sigma(w):
        e = ufl.sym(ufl.grad(w))
        return 2 * mu * e + lam * ufl.tr(e) * ufl.Identity(3)

    K = fpetsc.assemble_matrix(fem.form(ufl.inner(sigma(u), ufl.sym(ufl.grad(v))) * ufl.dx))
    K.assemble()
    M = fpetsc.assemble_matrix(fem.form(args.rho * ufl.inner(u, v) * ufl.dx))
    M.assemble()
    rigid = rigid_modes(V, comm, K)

    eps = SLEPc.EPS().create(comm)
    eps.setOperators(K, M)
    eps.setProblemType(SLEPc.EPS.ProblemType.GHEP)
    eps.setType(SLEPc.EPS.Type.KRYLOVSCHUR)
    eps.setDimensions(nev=args.nev)
    eps.setTarget((2 * np.pi * args.target) ** 2)
    eps.setWhichEigenpairs(SLEPc.EPS.Which.TARGET_MAGNITUDE)
    eps.setTolerances(tol=1e-10, max_it=500)
    st = eps.getST()
    st.setType(SLEPc.ST.Type.SINVERT)
    ksp = st.getKSP()
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType("lu")
    pc.setFactorSolverType("mumps")
    eps.setDeflationSpace(rigid)
    eps.solve()

    vr = K.createVecRight()
    freqs, vecs = [], []
    for i in range(eps.getConverged()):
        lam_i = eps.getEigenpair(i, vr).real
        freqs.append(float(np.sqrt(max(lam_i, 0.0)) / (2 * np.pi)))
        vecs.append(vr.array_r.copy())
    n_dofs = V.dofmap.index_map.size_global * V.dofmap.index_map_bs
    n_cells = mesh.topology.index_map(3).size_global
    stats = {"iterations": int(eps.getIterationNumber()), "n_converged": int(eps.getConverged())}
    for obj in (vr, *rigid, eps, K, M):
        obj.destroy()
    return np.array(freqs), vecs, n_dofs, n_cells, stats


def working_frequency(comm, freqs, vecs, target):
    """The mostly-axial converged mode nearest the target (None if there is none)."""
    best = None
    for f, x in zip(freqs, vecs):
        u = x.reshape(-1, 3)
        axial, total = comm.allreduce(float(np.sum(u[:, 2] ** 2))), comm.allreduce(float(np.sum(u * u)))
        if total > 0 and axial / total > 0.5 and (best is None or abs(f - target) < abs(best - target)):
            best = f
    return best


def main(argv=None) -> None:
    from mpi4py import MPI

    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    times = []
    for rep in range(args.repeats + 1):          # repeat 0 is the warm-up (kept only with --repeats 0)
        comm.Barrier()
        t0 = time.perf_counter()
        freqs, vecs, n_dofs, n_cells, stats = solve_once(args, comm)
        comm.Barrier()
        elapsed = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        if rep or not args.repeats:
            times.append(elapsed)
    f_work = working_frequency(comm, freqs, vecs, args.target)
    out = {"solver": "bare", "ranks": comm.size, "order": args.order, "n_dofs": int(n_dofs),
           "n_cells": int(n_cells), "times_s": times, "best_s": min(times), "f_working_Hz": f_work,
           "frequencies_Hz": sorted(freqs), **stats}
    if comm.rank == 0:
        text = json.dumps(out, indent=1)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        else:
            print(text)


if __name__ == "__main__":
    main()
