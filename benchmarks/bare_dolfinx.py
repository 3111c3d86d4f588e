"""The baseline: bare dolfinx 0.5 steady heat conduction and static elasticity, no WeldSim code.

Run under MPI on a mesh directory written by `weldsim_hpc.mesh.write_mesh_dir`
(mesh.xdmf + mesh.h5: grids "mesh" and "facet_tags")::

    mpirun -n 2 .venv/bin/python benchmarks/bare_dolfinx.py MESH_DIR --problem thermal \
        --k 20 --h 50 --T-inf 300 --T-fix 400 --dirichlet-tag 101 --robin-tag 103
    mpirun -n 2 .venv/bin/python benchmarks/bare_dolfinx.py MESH_DIR --problem elasticity \
        --E 2e11 --nu 0.3 --traction 0 0 1e6 --dirichlet-tag 101 --traction-tag 102

The problems are the ones benchmarks/solvers.py gives WeldSim (P1 elements):
thermal  ∫k∇T·∇v + ∫_robin h T v = ∫_robin h T_inf v, T = T_fix on the Dirichlet facets;
elasticity ∫σ(u):ε(v) = ∫_trac t·v, u = 0 on the Dirichlet facets.
Solver as WeldSim's: CG + GAMG (elasticity: rigid-body near-null space, block size 3),
rtol 1e-8, atol 1e-12, max_it 1000.

Phases (wall seconds, max over ranks, between barriers; the same in CPU seconds of each
rank's process under "cpu"): mesh (XDMF read + partition,
facet connectivity, facet tags), assembly (space, forms incl. JIT-cache lookup, BCs,
matrix and vector), setup (KSP creation + PCSetUp) and solve (KSPSolve).
`run_once(args, comm)` returns {phase: seconds, "iterations": n, "n_dofs": n, "norm": |x|}.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mesh_dir")
    p.add_argument("--problem", choices=["thermal", "elasticity"], required=True)
    p.add_argument("--k", type=float, default=20.0)
    p.add_argument("--h", type=float, default=50.0)
    p.add_argument("--T-inf", type=float, default=300.0)
    p.add_argument("--T-fix", type=float, default=400.0)
    p.add_argument("--E", type=float, default=2e11)
    p.add_argument("--nu", type=float, default=0.3)
    p.add_argument("--traction", type=float, nargs=3, default=[0.0, 0.0, 1e6])
    p.add_argument("--dirichlet-tag", type=int, default=101)
    p.add_argument("--robin-tag", type=int, default=103)
    p.add_argument("--traction-tag", type=int, default=102)
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--atol", type=float, default=1e-12)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def _rigid_modes(V, A):
    from petsc4py import PETSc

    n_owned = V.dofmap.index_map.size_local
    x = V.tabulate_dof_coordinates()[:n_owned]
    vecs = []
    for k in range(6):
        r = np.zeros((n_owned, 3))
        if k < 3:
            r[:, k] = 1.0
        else:
            r[:] = np.cross(np.eye(3)[k - 3], x)
        v = A.createVecRight()
        v.array[:] = r.ravel()
        vecs.append(v)
    for i, v in enumerate(vecs):       # MatNullSpace needs an orthonormal basis
        for w in vecs[:i]:
            v.axpy(-v.dot(w), w)
        v.normalize()
    return PETSc.NullSpace().create(vectors=vecs, comm=A.comm)


def run_once(args, comm) -> dict:
    import ufl
    from dolfinx import fem, io, mesh as dmesh
    from dolfinx.fem import petsc as fpetsc
    from mpi4py import MPI
    from petsc4py import PETSc

    t, cpu = {}, {}
    clock = [0.0, 0.0]

    def lap(name):
        comm.Barrier()
        now, now_cpu = time.perf_counter(), time.process_time()
        t[name] = comm.allreduce(now - clock[0], op=MPI.MAX)
        cpu[name] = comm.allreduce(now_cpu - clock[1], op=MPI.MAX)
        clock[:] = [now, now_cpu]

    comm.Barrier()
    clock[:] = [time.perf_counter(), time.process_time()]
    with io.XDMFFile(comm, f"{args.mesh_dir}/mesh.xdmf", "r") as xf:
        msh = xf.read_mesh(name="mesh")
        msh.topology.create_connectivity(2, 3)
        ft = xf.read_meshtags(msh, name="facet_tags")
    lap("mesh")

    fdim = 2
    ds = ufl.Measure("ds", domain=msh, subdomain_data=ft)
    dfacets = ft.indices[ft.values == args.dirichlet_tag]
    if args.problem == "thermal":
        V = fem.FunctionSpace(msh, ("Lagrange", 1))
        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        k, h = fem.Constant(msh, args.k), fem.Constant(msh, args.h)
        a = fem.form(k * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx + h * u * v * ds(args.robin_tag))
        L = fem.form(h * fem.Constant(msh, args.T_inf) * v * ds(args.robin_tag))
        dofs = fem.locate_dofs_topological(V, fdim, dfacets)
        bc = fem.dirichletbc(PETSc.ScalarType(args.T_fix), dofs, V)
    else:
        V = fem.VectorFunctionSpace(msh, ("Lagrange", 1))
        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        E, nu = args.E, args.nu
        mu, lam = fem.Constant(msh, E / (2 * (1 + nu))), fem.Constant(msh, E * nu / ((1 + nu) * (1 - 2 * nu)))

        def eps(w):
            return ufl.sym(ufl.grad(w))

        a = fem.form(ufl.inner(2 * mu * eps(u) + lam * ufl.tr(eps(u)) * ufl.Identity(3), eps(v)) * ufl.dx)
        L = fem.form(ufl.inner(fem.Constant(msh, np.array(args.traction, dtype=PETSc.ScalarType)), v)
                     * ds(args.traction_tag))
        dofs = fem.locate_dofs_topological(V, fdim, dfacets)
        bc = fem.dirichletbc(np.zeros(3, dtype=PETSc.ScalarType), dofs, V)
    A = fpetsc.assemble_matrix(a, bcs=[bc])
    A.assemble()
    b = fpetsc.assemble_vector(L)
    fpetsc.apply_lifting(b, [a], bcs=[[bc]])
    b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
    fpetsc.set_bc(b, [bc])
    lap("assembly")

    if args.problem == "elasticity":
        ns = _rigid_modes(V, A)
        A.setNearNullSpace(ns)
    ksp = PETSc.KSP().create(comm)
    ksp.setOperators(A)
    ksp.setType("cg")
    ksp.getPC().setType("gamg")
    ksp.setTolerances(rtol=args.rtol, atol=args.atol, max_it=1000)
    x = A.createVecRight()
    ksp.setUp()
    lap("setup")
    ksp.solve(b, x)
    lap("solve")
    out = {**t, "total": sum(t.values()), "cpu": {**cpu, "total": sum(cpu.values())},
           "iterations": ksp.getIterationNumber(),
           "reason": ksp.getConvergedReason(), "n_dofs": V.dofmap.index_map.size_global * V.dofmap.index_map_bs,
           "norm": x.norm()}
    for obj in (ksp, A, b, x):
        obj.destroy()
    return out


def main(argv=None) -> None:
    from mpi4py import MPI

    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    runs = [run_once(args, comm) for _ in range(1 + args.repeats)]   # the first is a warm-up
    best = min(runs[1:] or runs, key=lambda r: r["total"])
    if comm.rank == 0:
        text = json.dumps({"ranks": comm.size, "problem": args.problem, "warmup": runs[0], "best": best,
                           "runs": runs[1:]}, indent=1)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        else:
            print(text)


if __name__ == "__main__":
    main()
