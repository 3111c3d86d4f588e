"""One job of benchmarks/solvers.py: WeldSim's fenicsx backend vs the bare dolfinx script
(under MPI), or WeldSim's scipy backend vs scikit-fem assembly (one serial process).

    mpirun -n 2 .venv/bin/python benchmarks/solvers_worker.py fenicsx MESH_DIR --problem thermal \
        --repeats 1 --json out.json
    .venv/bin/python benchmarks/solvers_worker.py scipy MESH_DIR --problem elasticity --json out.json

The case (built here, identical to the bare script's defaults): a block horn 40×40×100 mm,
one made-up material (k 20 W/mK, E 200 GPa, ν 0.3), P1 elements, solver rtol 1e-8.
thermal_steady: T = 400 K on input_face, convection h = 50 W/m²K, T_inf = 300 K on lateral.
static_structural: input_face fixed, traction (0, 0, 1 MPa) on output_face.

Phases, measured from OUTSIDE the backends (no backend code changed):
* fenicsx: mesh = `mesh_io.read_mesh`; the rest of `solve_thermal`/`solve_elasticity`
  is split with PETSc's own log events (PETSc.Log.begin() here): setup = PCSetUp, solve =
  KSPSolve (PETSc 3.18 runs KSPSetUp/PCSetUp before the KSPSolve event starts, so the two
  do not overlap), assembly = the call's wall time − PCSetUp − KSPSolve (so it includes forms, BCs, post-processing such as stresses / P1 output).
* scipy: mesh = `mesh.read_mesh_dir`; timers wrapped around `SPDSolver.__call__` and
  `pyamg.smoothed_aggregation_solver` (module attributes patched in this process): setup =
  the AMG hierarchy, solve = SPDSolver − setup, assembly = the call − SPDSolver.
* scikit-fem: `MeshTet(points.T, cells.T)`, `Basis(ElementTetP1())` and `asm` of the same
  bilinear form (Laplace k∇u·∇v; linear elasticity), CSR out; mesh/basis and asm timed apart.
Wall seconds between barriers, max over ranks; one untimed warm-up, then --repeats; the
WeldSim and bare paths alternate (swapped order every other round). Best = min total.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

K_COND, E_MOD, NU = 20.0, 2e11, 0.3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["fenicsx", "scipy"])
    p.add_argument("mesh_dir")
    p.add_argument("--problem", choices=["thermal", "elasticity"], required=True)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--no-skfem", action="store_true")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def make_case(problem: str):
    from weldsim_hpc.case import CaseSpec
    from weldsim_hpc.materials import material_from_dict

    mat = material_from_dict({
        "id": "bench_solid", "name": "bench_solid", "density_kg_m3": 7800.0, "youngs_modulus_Pa": E_MOD,
        "poisson_ratio": NU, "conductivity_W_mK": K_COND, "specific_heat_J_kgK": 500.0,
        "expansion_1_K": 1e-5, "yield_strength_Pa": 1e9, "fatigue_strength_Pa": 1e8,
        "fatigue_cycles": 1e9, "loss_factor": 1e-3, "solidus_K": 1700.0})
    base = {"name": "bench", "geometry": {"kind": "block", "length_m": 0.1, "width_m": 0.04, "depth_m": 0.04},
            "materials": {"horn": "d2"}, "element_order": 1, "solver": {"rtol": 1e-8, "atol": 1e-12}}
    if problem == "thermal":
        case = CaseSpec.model_validate({**base, "analysis": "thermal_steady", "boundary_conditions": [
            {"type": "temperature", "boundary": "input_face", "value": 400.0},
            {"type": "convection", "boundary": "lateral", "h_W_m2K": 50.0, "T_inf_K": 300.0}]})
    else:
        case = CaseSpec.model_validate({**base, "analysis": "static_structural", "boundary_conditions": [
            {"type": "fixed", "boundary": "input_face"},
            {"type": "traction", "boundary": "output_face", "value": [0.0, 0.0, 1e6]}]})
    return case, {"horn": mat}


def fenicsx_main(args) -> dict:
    from mpi4py import MPI
    from petsc4py import PETSc

    import bare_dolfinx as bare
    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh

    comm = MPI.COMM_WORLD
    PETSc.Log.begin()
    case, materials = make_case(args.problem)
    if args.problem == "thermal":
        from weldsim_hpc.backends.fenicsx.thermal import solve_thermal as solve
    else:
        from weldsim_hpc.backends.fenicsx.elasticity import solve_elasticity as solve
    bare_args = bare.parse_args([args.mesh_dir, "--problem", args.problem, "--k", repr(K_COND),
                                 "--E", repr(E_MOD), "--nu", repr(NU)])
    events = {n: PETSc.Log.Event(n) for n in ("KSPSolve", "PCSetUp")}

    def perf() -> dict:
        return {n: e.getPerfInfo()["time"] for n, e in events.items()}

    def gmax(x: float) -> float:
        return comm.allreduce(x, op=MPI.MAX)

    def weldsim() -> dict:
        comm.Barrier()
        t0 = time.perf_counter()
        fmesh = read_mesh(args.mesh_dir, comm)
        comm.Barrier()
        t1 = time.perf_counter()
        p0 = perf()
        res = solve(fmesh, comm, case, materials)
        comm.Barrier()
        t2 = time.perf_counter()
        p1 = perf()
        ksp = p1["KSPSolve"] - p0["KSPSolve"]
        pcs = p1["PCSetUp"] - p0["PCSetUp"]
        out = {"mesh": gmax(t1 - t0), "call": gmax(t2 - t1), "setup": gmax(pcs), "solve": gmax(ksp)}
        out["assembly"] = out["call"] - out["setup"] - out["solve"]
        out["total"] = out["mesh"] + out["call"]
        its = getattr(res, "ksp_iterations", None)
        out["iterations"] = its[-1] if isinstance(its, list) and its else its
        return out

    def baseline() -> dict:
        return bare.run_once(bare_args, comm)

    paths = {"weldsim": weldsim, "bare": baseline}
    warm = {n: fn() for n, fn in paths.items()}
    runs = {n: [] for n in paths}
    for rnd in range(args.repeats):
        for n in (list(paths) if rnd % 2 == 0 else list(paths)[::-1]):
            runs[n].append(paths[n]())
    out = {"mode": "fenicsx", "ranks": comm.size, "problem": args.problem, "n_dofs": warm["bare"]["n_dofs"]}
    for n in paths:
        out[n] = {"warmup": warm[n], "runs": runs[n], "best": min(runs[n] or [warm[n]], key=lambda r: r["total"])}
    return out


def skfem_assembly(mesh, problem: str) -> dict:
    import skfem
    from skfem.models.elasticity import lame_parameters, linear_elasticity
    from skfem.models.poisson import laplace

    t0 = time.perf_counter()
    m = skfem.MeshTet(mesh.points.T.copy(), mesh.cells.T.copy())
    if problem == "thermal":
        basis = skfem.Basis(m, skfem.ElementTetP1())
        t1 = time.perf_counter()
        A = (K_COND * skfem.asm(laplace, basis)).tocsr()
    else:
        basis = skfem.Basis(m, skfem.ElementVector(skfem.ElementTetP1()))
        t1 = time.perf_counter()
        A = skfem.asm(linear_elasticity(*lame_parameters(E_MOD, NU)), basis).tocsr()
    t2 = time.perf_counter()
    return {"mesh_basis": t1 - t0, "assembly": t2 - t1, "nnz": int(A.nnz), "n_dofs": int(A.shape[0])}


def scipy_main(args) -> dict:
    import pyamg

    from weldsim_hpc.backends.scipy import solvers as S
    from weldsim_hpc.mesh import read_mesh_dir

    case, materials = make_case(args.problem)
    if args.problem == "thermal":
        from weldsim_hpc.backends.scipy.thermal import solve_thermal as solve
    else:
        from weldsim_hpc.backends.scipy.elasticity import solve_elasticity as solve
    acc = {"spd": 0.0, "amg": 0.0}
    orig_call, orig_sa = S.SPDSolver.__call__, pyamg.smoothed_aggregation_solver

    def timed_call(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return orig_call(self, *a, **kw)
        finally:
            acc["spd"] += time.perf_counter() - t0

    def timed_sa(*a, **kw):
        t0 = time.perf_counter()
        try:
            return orig_sa(*a, **kw)
        finally:
            acc["amg"] += time.perf_counter() - t0

    S.SPDSolver.__call__ = timed_call
    pyamg.smoothed_aggregation_solver = timed_sa

    def weldsim() -> dict:
        acc.update(spd=0.0, amg=0.0)
        t0 = time.perf_counter()
        mesh = read_mesh_dir(args.mesh_dir)
        t1 = time.perf_counter()
        res = solve(mesh, case, materials)
        t2 = time.perf_counter()
        out = {"mesh": t1 - t0, "call": t2 - t1, "setup": acc["amg"], "solve": acc["spd"] - acc["amg"],
               "assembly": (t2 - t1) - acc["spd"], "total": t2 - t0}
        its = getattr(res, "ksp_iterations", None) or getattr(getattr(res, "solver", None), "iterations", None)
        out["iterations"] = its[-1] if isinstance(its, list) and its else its
        return out, mesh

    warm, mesh = weldsim()
    runs = [weldsim()[0] for _ in range(args.repeats)]
    out = {"mode": "scipy", "ranks": 1, "problem": args.problem, "n_nodes": int(len(mesh.points)),
           "n_cells": int(len(mesh.cells)),
           "scipy": {"warmup": warm, "runs": runs, "best": min(runs or [warm], key=lambda r: r["total"])}}
    if not args.no_skfem:
        sk = [skfem_assembly(mesh, args.problem) for _ in range(max(1, args.repeats))]
        out["skfem"] = {"runs": sk, "best": min(sk, key=lambda r: r["assembly"])}
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    out = fenicsx_main(args) if args.mode == "fenicsx" else scipy_main(args)
    if args.mode == "scipy" or __import__("mpi4py.MPI").MPI.COMM_WORLD.rank == 0:
        text = json.dumps(out, indent=1)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        else:
            print(text)


if __name__ == "__main__":
    main()
