"""One job of benchmarks/solvers.py: WeldSim's fenicsx backend vs the bare dolfinx script
(under MPI), or WeldSim's scipy backend vs scikit-fem assembly (one serial process).

    mpirun -n 2 .venv/bin/python benchmarks/solvers_worker.py fenicsx MESH_DIR --problem thermal \
        --repeats 1 --json out.json
    .venv/bin/python benchmarks/solvers_worker.py scipy MESH_DIR --problem elasticity --json out.json

The case (built here, identical to the bare script's defaults): a block horn 40×40×100 mm,
one made-up material (k 20 W/mK, E 200 GPa, ν 0.3), P1 elements, solver rtol 1e-8.
thermal_steady: T = 400 K on input_face, convection h = 50 W/m²K, T_inf = 300 K on lateral.
static_structural: input_face fixed, traction (0, 0, 1 MPa) on output_face.

Phases, measured from OUTSIDE the backends (timers patched onto module attributes in this
process; a patched call nested in another is charged to its own phase only):
* mesh: `mesh_io.read_mesh` (fenicsx) / `mesh.read_mesh_dir` (scipy) / `MeshTet` (scikit-fem,
  under "space").
* space (scipy, scikit-fem): the mesh geometry and facet topology the assembly needs —
  scipy `fe.Space.__init__` + `fe.Facets.__init__` (cell Jacobians, dof numbering, which
  tagged triangles are exterior); scikit-fem `MeshTet` + `Basis` + `FacetBasis` on the
  tagged facets. dolfinx does the equivalent inside mesh read / function space creation.
* other: work the bare script does not do, reported apart so the comparison is like for
  like — fenicsx thermal: the run metrics (`_PeakTracker`: peak temperature per volume
  group; `_HeatContent`: ∫ρc(T−T0)dx); fenicsx elasticity: `check_constrained` (rigid-body
  constraint check) and `ElasticityProblem._result` (stress, von Mises DG0 and lumped P1,
  peak per volume, metrics); scipy: the same metrics/post-processing (`PeakTracker`,
  `heat_capacity_vector`, `Space.p1_values`, `check_constrained`, `_result`) plus the
  Dirichlet elimination (`solve_with_dirichlet` / `dirichlet_system` / `dirichlet_rhs`
  outside the solver: dolfinx applies BCs inside its assembly, which cannot be split).
* setup / solve: fenicsx from PETSc's own log events (PETSc.Log.begin() here): setup =
  PCSetUp, solve = KSPSolve (PETSc 3.18 runs KSPSetUp/PCSetUp before the KSPSolve event
  starts, so the two do not overlap); scipy: setup = `pyamg.smoothed_aggregation_solver`,
  solve = `SPDSolver.__call__` − setup.
* assembly: the rest of the public call (forms, matrices, vectors, BCs in dolfinx,
  material coefficients).
* scikit-fem assembly: `asm` of the SAME forms WeldSim assembles — thermal: k∇u·∇v on the
  cells + h·u·v on the convection facets, and the load h·T_inf·v there; elasticity: the
  linear-elasticity form and the traction load on the loaded facets; CSR out.
Wall seconds between barriers, max over ranks (per phase); one untimed warm-up, then
--repeats; the WeldSim and bare paths alternate (swapped order every other round). Best =
min total.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

K_COND, E_MOD, NU = 20.0, 2e11, 0.3
H_CONV, T_INF, TRACTION_Z = 50.0, 300.0, 1e6
TAG_FIXED, TAG_TRACTION, TAG_CONV = 101, 102, 103   # input_face, output_face, lateral


class Phases:
    """Exclusive wall time per phase of patched functions (nesting-aware)."""

    def __init__(self):
        self.acc: dict[str, list[float]] = {}   # phase -> [wall s, CPU s]
        self._stack: list[list[float]] = []

    def reset(self) -> None:
        self.acc = {}

    def get(self, phase: str) -> float:
        return self.acc.get(phase, [0.0, 0.0])[0]

    def get_cpu(self, phase: str) -> float:
        return self.acc.get(phase, [0.0, 0.0])[1]

    def patch(self, owner, name: str, phase: str) -> None:
        fn = getattr(owner, name)
        stack = self._stack

        def timed(*a, **kw):
            t0, c0 = time.perf_counter(), time.process_time()
            stack.append([0.0, 0.0])
            try:
                return fn(*a, **kw)
            finally:
                elapsed = [time.perf_counter() - t0, time.process_time() - c0]
                inner = stack.pop()
                acc = self.acc.setdefault(phase, [0.0, 0.0])
                for i in (0, 1):
                    acc[i] += elapsed[i] - inner[i]
                    if stack:
                        stack[-1][i] += elapsed[i]

        setattr(owner, name, timed)


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
    phases = Phases()
    if args.problem == "thermal":
        from weldsim_hpc.backends.fenicsx import thermal as mod

        solve = mod.solve_thermal
        for owner, name in ((mod._PeakTracker, "__init__"), (mod._PeakTracker, "update"),
                            (mod._HeatContent, "__init__"), (mod._HeatContent, "__call__")):
            phases.patch(owner, name, "other")
    else:
        from weldsim_hpc.backends.fenicsx import elasticity as mod

        solve = mod.solve_elasticity
        phases.patch(mod, "check_constrained", "other")
        phases.patch(mod.ElasticityProblem, "_result", "other")
    bare_args = bare.parse_args([args.mesh_dir, "--problem", args.problem, "--k", repr(K_COND),
                                 "--E", repr(E_MOD), "--nu", repr(NU)])
    events = {n: PETSc.Log.Event(n) for n in ("KSPSolve", "PCSetUp")}

    def perf() -> dict:
        return {n: e.getPerfInfo()["time"] for n, e in events.items()}

    def gmax(x: float) -> float:
        return comm.allreduce(x, op=MPI.MAX)

    def weldsim() -> dict:
        comm.Barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        fmesh = read_mesh(args.mesh_dir, comm)
        comm.Barrier()
        t1, c1 = time.perf_counter(), time.process_time()
        p0 = perf()
        phases.reset()
        res = solve(fmesh, comm, case, materials)
        comm.Barrier()
        t2, c2 = time.perf_counter(), time.process_time()
        p1 = perf()
        ksp = p1["KSPSolve"] - p0["KSPSolve"]
        pcs = p1["PCSetUp"] - p0["PCSetUp"]
        out = {"mesh": gmax(t1 - t0), "call": gmax(t2 - t1), "setup": gmax(pcs), "solve": gmax(ksp),
               "other": gmax(phases.get("other")), "space": 0.0}
        out["assembly"] = out["call"] - out["setup"] - out["solve"] - out["other"]
        out["total"] = out["mesh"] + out["call"]
        out["cpu"] = {"mesh": gmax(c1 - c0), "call": gmax(c2 - c1), "other": gmax(phases.get_cpu("other"))}
        out["cpu"]["total"] = out["cpu"]["mesh"] + out["cpu"]["call"]
        its = getattr(res, "ksp_iterations", None)
        out["iterations"] = its[-1] if isinstance(its, list) and its else its
        return out

    def baseline() -> dict:
        return {"space": 0.0, "other": 0.0, **bare.run_once(bare_args, comm)}

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


def _facet_indices(m, tris) -> "np.ndarray":
    """scikit-fem facet indices of the triangles `tris` (node indices, any vertex order)."""
    import numpy as np

    w = m.p.shape[1] + 1
    f = np.sort(m.facets, axis=0).astype(np.int64)
    fkey = (f[0] * w + f[1]) * w + f[2]
    t = np.sort(np.asarray(tris, dtype=np.int64), axis=1)
    tkey = (t[:, 0] * w + t[:, 1]) * w + t[:, 2]
    order = np.argsort(fkey)
    pos = order[np.searchsorted(fkey, tkey, sorter=order)]
    if not np.array_equal(fkey[pos], tkey):
        raise RuntimeError("a tagged triangle is not a scikit-fem facet")
    return pos


def skfem_assembly(mesh, problem: str) -> dict:
    """scikit-fem assembling the forms WeldSim assembles for the case (see the module doc)."""
    import skfem
    from skfem.models.elasticity import lame_parameters, linear_elasticity
    from skfem.models.poisson import laplace, mass, unit_load

    t0 = time.perf_counter()
    m = skfem.MeshTet(mesh.points.T.copy(), mesh.cells.T.copy())
    tm = time.perf_counter()
    if problem == "thermal":
        e = skfem.ElementTetP1()
        basis = skfem.Basis(m, e)
        fb = skfem.FacetBasis(m, e, facets=_facet_indices(m, mesh.facets[mesh.facet_tags == TAG_CONV]))
        t1, c1 = time.perf_counter(), time.process_time()
        A = (K_COND * skfem.asm(laplace, basis) + H_CONV * skfem.asm(mass, fb)).tocsr()
        f = (H_CONV * T_INF) * skfem.asm(unit_load, fb)
    else:
        e = skfem.ElementVector(skfem.ElementTetP1())
        basis = skfem.Basis(m, e)
        fb = skfem.FacetBasis(m, e, facets=_facet_indices(m, mesh.facets[mesh.facet_tags == TAG_TRACTION]))
        t1, c1 = time.perf_counter(), time.process_time()

        @skfem.LinearForm
        def traction(v, w):
            return TRACTION_Z * v.value[2]

        A = skfem.asm(linear_elasticity(*lame_parameters(E_MOD, NU)), basis).tocsr()
        f = skfem.asm(traction, fb)
    t2, c2 = time.perf_counter(), time.process_time()
    return {"mesh": tm - t0, "space": t1 - tm, "mesh_basis": t1 - t0, "assembly": t2 - t1,
            "cpu": {"assembly": c2 - c1},
            "nnz": int(A.nnz), "n_dofs": int(A.shape[0]), "load_sum": float(f.sum())}


def scipy_main(args) -> dict:
    import pyamg

    from weldsim_hpc.backends.scipy import fe
    from weldsim_hpc.backends.scipy import solvers as S
    from weldsim_hpc.mesh import read_mesh_dir

    case, materials = make_case(args.problem)
    phases = Phases()
    for owner, name in ((fe.Space, "__init__"), (fe.Facets, "__init__")):
        phases.patch(owner, name, "space")
    phases.patch(S.SPDSolver, "__call__", "solve")
    phases.patch(pyamg, "smoothed_aggregation_solver", "setup")
    phases.patch(fe.Space, "p1_values", "other")
    if args.problem == "thermal":
        from weldsim_hpc.backends.scipy import thermal as mod

        solve = mod.solve_thermal
        for owner, name in ((mod, "solve_with_dirichlet"), (mod, "heat_capacity_vector"),
                            (mod.PeakTracker, "__init__"), (mod.PeakTracker, "update")):
            phases.patch(owner, name, "other")
    else:
        from weldsim_hpc.backends.scipy import elasticity as mod

        solve = mod.solve_elasticity
        for owner, name in ((mod, "dirichlet_system"), (mod, "dirichlet_rhs"), (mod, "check_constrained"),
                            (mod.ElasticityProblem, "_result")):
            phases.patch(owner, name, "other")

    def weldsim() -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        mesh = read_mesh_dir(args.mesh_dir)
        t1, c1 = time.perf_counter(), time.process_time()
        phases.reset()
        res = solve(mesh, case, materials)
        t2, c2 = time.perf_counter(), time.process_time()
        names = ("space", "setup", "solve", "other")
        out = {"mesh": t1 - t0, "call": t2 - t1, **{k: phases.get(k) for k in names}}
        out["assembly"] = out["call"] - out["space"] - out["setup"] - out["solve"] - out["other"]
        out["total"] = t2 - t0
        cpu = {"mesh": c1 - c0, "call": c2 - c1, **{k: phases.get_cpu(k) for k in names}}
        cpu["assembly"] = cpu["call"] - cpu["space"] - cpu["setup"] - cpu["solve"] - cpu["other"]
        cpu["total"] = c2 - c0
        out["cpu"] = cpu
        its = getattr(res, "ksp_iterations", None) or getattr(res, "iterations", None)
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
