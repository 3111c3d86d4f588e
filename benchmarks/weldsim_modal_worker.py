"""One MPI job of the benchmark: WeldSim's modal path and the bare script, side by side.

Launched by `modal_stepped_horn.py` (never by hand needed, but it can be)::

    mpirun -n 2 .venv/bin/python benchmarks/weldsim_modal_worker.py CASE.toml MESH_DIR \
        --order 2 --repeats 3 [--bare] [--profile] --json out.json

The case file gives the material (one volume group), the target frequency and
modes_wanted; --order overrides its element order.

WeldSim (timed): `mesh_io.read_mesh(MESH_DIR)` + `modal.solve_modal(...)` — the whole
modal path (DG0 properties, assembly, rigid-body deflation, SLEPc, classification).
Bare (timed, with --bare): `bare_slepc_modal.solve_once` on the same mesh, order, material,
target and number of modes (see that file: no WeldSim code at all).

Timing: wall seconds between barriers, max over ranks. Each path first runs once untimed
(warm-up: JIT cache, first-touch allocations), then `repeats` rounds; with --bare the two
paths alternate within a round, in swapped order every other round (W B, B W, W B …), so
a burst of load from another process hits both alike. Best (min) of the repeats counts.
With --profile, a final extra WeldSim run under cProfile (rank 0) gives the cumulative
seconds of its main phases (not part of the timings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case")
    p.add_argument("mesh_dir")
    p.add_argument("--order", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bare", action="store_true", help="also time the bare SLEPc script, interleaved")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


#: phases --profile reports: label -> (file name suffix, function name) in cProfile's table
PROFILED = {
    "read_mesh": ("mesh_io.py", "read_mesh"),
    "solve_modal": ("modal.py", "solve_modal"),
    "matrix assembly (K, M)": ("petsc.py", "_assemble_matrix_form"),
    "mesh tags (read_meshtags)": ("utils.py", "read_meshtags"),
    "material DG0 fields (_properties)": ("modal.py", "_properties"),
    "rigid modes (_free_rigid_modes)": ("modal.py", "_free_rigid_modes"),
    "EPS solve": ("~", "<method 'solve' of 'slepc4py.SLEPc.EPS' objects>"),
    "EPS getEigenpair": ("~", "<method 'getEigenpair' of 'slepc4py.SLEPc.EPS' objects>"),
    "classification setup (_Fractions.__init__)": ("modal.py", "__init__"),
    "classification per mode (_Fractions.__call__)": ("modal.py", "__call__"),
    "form compilation (fem.form, all)": ("forms.py", "form"),
}


def _phase_times(profiler) -> dict[str, float]:
    import pstats

    stats = pstats.Stats(profiler).stats
    return {label: round(sum(v[3] for (fname, _line, fn), v in stats.items()
                             if fn == name and fname.endswith(suffix)), 4)
            for label, (suffix, name) in PROFILED.items()}


def main(argv=None) -> None:
    from mpi4py import MPI

    import bare_slepc_modal as bare
    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh
    from weldsim_hpc.backends.fenicsx.modal import solve_modal
    from weldsim_hpc.case_checks import resolve_case_materials
    from weldsim_hpc.case_io import load_case

    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    case = load_case(args.case).model_copy(update={"element_order": args.order})
    materials, problems = resolve_case_materials(case)
    if problems or len(materials) != 1:
        raise SystemExit(f"the benchmark needs one valid material, got {materials} {problems}")
    mat = next(iter(materials.values()))
    bare_args = bare.parse_args([args.mesh_dir, "--order", str(args.order), "--E", repr(mat.youngs_modulus_Pa),
                                 "--nu", repr(mat.poisson_ratio), "--rho", repr(mat.density_kg_m3),
                                 "--target", repr(case.target_frequency_Hz),
                                 "--nev", str(case.solver.modes_wanted)])
    last = {}

    def weldsim():
        fmesh = read_mesh(args.mesh_dir, comm)
        last["weldsim"] = (fmesh, solve_modal(fmesh, comm, case, materials))

    def baseline():
        last["bare"] = bare.solve_once(bare_args, comm)

    def timed(fn) -> float:
        comm.Barrier()
        t0 = time.perf_counter()
        fn()
        comm.Barrier()
        return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)

    paths = {"weldsim": weldsim, **({"bare": baseline} if args.bare else {})}
    warm = {name: timed(fn) for name, fn in paths.items()}
    times = {name: [] for name in paths}
    for rnd in range(args.repeats):
        for name in (list(paths) if rnd % 2 == 0 else list(paths)[::-1]):
            times[name].append(timed(paths[name]))

    fmesh, result = last["weldsim"]
    w = result.summary.working
    out = {"ranks": comm.size, "order": args.order, "mesh_dir": os.path.abspath(args.mesh_dir),
           "n_dofs": result.n_dofs, "n_cells": int(fmesh.mesh.topology.index_map(3).size_global),
           "weldsim": {"warmup_s": warm["weldsim"], "times_s": times["weldsim"],
                       "best_s": min(times["weldsim"], default=warm["weldsim"]),
                       "f_working_Hz": None if w is None else w.frequency_Hz,
                       "frequencies_Hz": result.frequencies_Hz.tolist(), "iterations": result.iterations,
                       "n_converged": result.n_converged}}
    if args.bare:
        freqs, vecs, n_dofs, _n_cells, stats = last["bare"]
        out["bare"] = {"warmup_s": warm["bare"], "times_s": times["bare"],
                       "best_s": min(times["bare"], default=warm["bare"]),
                       "f_working_Hz": bare.working_frequency(comm, freqs, vecs, case.target_frequency_Hz),
                       "frequencies_Hz": sorted(freqs.tolist()), "n_dofs": int(n_dofs), **stats}
        out["ratio_weldsim_over_bare"] = out["weldsim"]["best_s"] / out["bare"]["best_s"]
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        comm.Barrier()
        profiler.enable()
        weldsim()
        profiler.disable()
        out["weldsim"]["profile_rank0_s"] = _phase_times(profiler)
    if comm.rank == 0:
        text = json.dumps(out, indent=1)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        else:
            print(text)


if __name__ == "__main__":
    main()
