"""Benchmark: time to a 0.1 %-accurate working frequency, 20 kHz Ti-6Al-4V stepped horn.

    .venv/bin/python benchmarks/modal_stepped_horn.py            # full run, writes results/
    .venv/bin/python benchmarks/modal_stepped_horn.py --quick    # a smoke run (minutes)

What it does (the case is examples/horn_20khz_stepped_modal.toml, its default mesh
settings — curvature_segments 32, refine defaults — with only mesh.size_m varied):

1. meshes the horn at every size of the sweeps (gmsh, in this process; cached in
   --work-dir, meshing is never timed);
2. reference: the working frequency on the finest P2 meshes (--ref-sizes), Richardson-
   extrapolated in the effective size h = (V / n_cells)^(1/3) with the order p fitted
   from three meshes;
3. sweeps: for P1 and P2, from coarse to fine, the first size whose working frequency is
   within --tol (0.1 %) of the reference (frequencies from the bare script, 2 ranks;
   WeldSim's agree to round-off and are recorded again in step 4);
4. timing: on each selected mesh, 1 and 2 ranks, one MPI job runs WeldSim
   (read_mesh + solve_modal) and the bare SLEPc script (bare_slepc_modal.py) alternately,
   after one untimed warm-up each; best of --repeats (3) wall times, max over ranks;
5. prints a table and writes results/modal_stepped_horn.json and .md (machine, date,
   versions, load average before and after).

MPI jobs are started from this process, which never imports mpi4py/dolfinx, with
weldsim_hpc.launch.clean_environment() (one BLAS thread per rank) and an explicit argv:
``mpirun [--allow-run-as-root] --oversubscribe -n N python <worker> ...``.
Figures are recorded, never asserted. The ratio target is WeldSim / bare <= 1.10.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASE = ROOT / "examples" / "horn_20khz_stepped_modal.toml"
RESULTS = HERE / "results"
PYTHON = sys.executable
RATIO_TARGET = 1.10


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: short sweeps, 1 repeat, reference from --ref-sizes 4 3 2.5 unless given")
    p.add_argument("--p1-sizes", type=float, nargs="+", default=[2.0, 1.5, 1.25],
                   help="P1 sweep, mm, coarse to fine")
    p.add_argument("--p2-sizes", type=float, nargs="+", default=[12.0, 10.0, 8.0, 6.0, 5.0, 4.0, 3.0],
                   help="P2 sweep, mm, coarse to fine")
    p.add_argument("--ref-sizes", type=float, nargs=3, default=None,
                   help="three P2 sizes (mm) for the Richardson reference (default 3 2.5 2)")
    p.add_argument("--tol", type=float, default=1e-3, help="relative accuracy wanted (0.001 = 0.1 %%)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per path (default 3; quick 1)")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--max-timed-dofs", type=int, default=90_000,
                   help="an order that does not reach --tol is timed on its finest swept mesh with at most "
                        "this many dofs (a lower bound of its time to the tolerance)")
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "weldsim_bench_modal"),
                   help="meshes and per-job JSON (cached between runs)")
    p.add_argument("--out", default=str(RESULTS / "modal_stepped_horn"), help="results path stem")
    args = p.parse_args(argv)
    if args.quick:
        args.p1_sizes = args.p1_sizes if "--p1-sizes" in (argv or sys.argv) else [2.0, 1.5]
        args.p2_sizes = args.p2_sizes if "--p2-sizes" in (argv or sys.argv) else [8.0, 6.0, 5.0]
        args.ref_sizes = args.ref_sizes or [4.0, 3.0, 2.5]
        args.repeats = 1 if args.repeats is None else args.repeats
    args.ref_sizes = args.ref_sizes or [3.0, 2.5, 2.0]
    args.repeats = 3 if args.repeats is None else args.repeats
    return args


# ---------------------------------------------------------------- meshes (no MPI here)

def _case():
    from weldsim_hpc.case_io import load_case

    return load_case(CASE)


def mesh_dir(work: Path, size_mm: float) -> Path:
    """The mesh directory of the example at size_mm (built once, then reused)."""
    out = work / f"h{size_mm:g}mm"
    if not (out / "mesh" / "mesh.xdmf").is_file():
        from weldsim_hpc.pipeline import mesh_case

        case = _case()
        case = case.model_copy(update={"mesh": case.mesh.model_copy(update={"size_m": size_mm * 1e-3})})
        t0 = time.perf_counter()
        mesh, _ = mesh_case(case, out)
        print(f"  meshed h = {size_mm:g} mm: {mesh.n_cells} tets, {mesh.n_nodes} nodes "
              f"({time.perf_counter() - t0:.1f} s, not timed)", flush=True)
    return out / "mesh"


# ---------------------------------------------------------------- MPI jobs

def mpi_argv(ranks: int, script: Path, *args: str) -> list[str]:
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return ["mpirun", *root, "--oversubscribe", "-n", str(ranks), PYTHON, str(script), *args]


def run_job(argv: list[str], out_json: Path, log: Path) -> dict:
    from weldsim_hpc.launch import clean_environment, refuse_if_mpi_imported

    refuse_if_mpi_imported()
    out_json.unlink(missing_ok=True)
    with open(log, "ab") as fh:
        fh.write(f"== {shlex.join(argv)}\n".encode())
        fh.flush()
        proc = subprocess.run(argv, env=clean_environment(), cwd=ROOT, stdin=subprocess.DEVNULL,
                              stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not out_json.is_file():
        raise SystemExit(f"job failed (rc {proc.returncode}): {shlex.join(argv)}; see {log}")
    return json.loads(out_json.read_text())


def frequency(work: Path, order: int, size_mm: float, material) -> dict:
    """Working frequency on one mesh (bare script, 2 ranks, single solve), cached."""
    cache = work / f"freq_P{order}_h{size_mm:g}mm.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    md = mesh_dir(work, size_mm)
    case = _case()
    argv = mpi_argv(2, HERE / "bare_slepc_modal.py", str(md), "--order", str(order),
                    "--E", repr(material.youngs_modulus_Pa), "--nu", repr(material.poisson_ratio),
                    "--rho", repr(material.density_kg_m3), "--target", repr(case.target_frequency_Hz),
                    "--nev", str(case.solver.modes_wanted), "--repeats", "0", "--json", str(cache))
    t0 = time.perf_counter()
    out = run_job(argv, cache, work / "jobs.log")
    print(f"  P{order} h = {size_mm:g} mm: {out['n_dofs']} dofs, f_working = {out['f_working_Hz']:.2f} Hz "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def h_eff(volume_m3: float, n_cells: int) -> float:
    return (volume_m3 / n_cells) ** (1 / 3)


def richardson(points: list[tuple[float, float]]) -> dict:
    """Three (h, f), coarse to fine: f(h) = f_inf + C h^p; p fitted by bisection."""
    (h1, f1), (h2, f2), (h3, f3) = points
    if (f1 - f2) * (f2 - f3) <= 0:
        return {"f_inf_Hz": f3, "p": None, "note": "non-monotone: finest value used"}
    target = (f1 - f2) / (f2 - f3)
    g = lambda p: (h1**p - h2**p) / (h2**p - h3**p) - target  # noqa: E731
    lo, hi = 0.3, 12.0
    if g(lo) * g(hi) > 0:
        return {"f_inf_Hz": f3, "p": None, "note": "order not bracketed: finest value used"}
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if g(lo) * g(mid) > 0 else (lo, mid)
    p = 0.5 * (lo + hi)
    f_inf = f3 - (f2 - f3) / ((h2 / h3) ** p - 1)
    return {"f_inf_Hz": f_inf, "p": p, "note": "three-mesh Richardson in h_eff"}


# ---------------------------------------------------------------- report

def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=_clean(), timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    libs = version([PYTHON, "-c", "import dolfinx, petsc4py, slepc4py, numpy; "
                    "print(dolfinx.__version__, petsc4py.__version__, slepc4py.__version__, numpy.__version__)"])
    names = ("dolfinx", "petsc4py", "slepc4py", "numpy")
    mpi = version(["mpirun", "--version"]).splitlines()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
    except OSError:
        commit = "?"
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "host": platform.node(), "python": platform.python_version(),
            "platform": platform.platform(), "mpi": mpi[0] if mpi else "?", "git_commit": commit,
            **dict(zip(names, libs.split() if libs else ["?"] * 4))}


def _clean() -> dict:
    from weldsim_hpc.launch import clean_environment

    return clean_environment()


def markdown(report: dict) -> str:
    m, ref = report["machine"], report["reference"]
    lines = [
        "# Modal benchmark: 20 kHz Ti-6Al-4V stepped horn",
        "",
        f"Date {report['date']}; {m['cpu_model']}, nproc {m['nproc']}; dolfinx {m.get('dolfinx')}, "
        f"petsc4py {m.get('petsc4py')}, slepc4py {m.get('slepc4py')}, numpy {m.get('numpy')}; {m['mpi']}; "
        f"commit {m['git_commit']}. Load average (1 min) before / after: "
        f"{report['loadavg_before'][0]:.2f} / {report['loadavg_after'][0]:.2f} — the machine is shared, so "
        f"times are best of {report['repeats']} (after one untimed warm-up), WeldSim and bare alternating in one job.",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Reference working frequency (P2, {ref['note']}; sizes {ref['sizes_mm']} mm, p = "
        f"{'n/a' if ref['p'] is None else format(ref['p'], '.2f')}): **{ref['f_inf_Hz']:.2f} Hz** "
        f"(finest mesh {ref['finest_Hz']:.2f} Hz, {ref['finest_dofs']} dofs).",
        "",
        "## Sweeps (working frequency vs mesh size; bare script, 2 ranks)",
        "",
        "| order | size mm | tets | dofs | f_working Hz | error % |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["sweeps"]:
        lines.append(f"| P{row['order']} | {row['size_mm']:g} | {row['n_cells']} | {row['n_dofs']} | "
                     f"{row['f_working_Hz']:.2f} | {100 * row['rel_error']:+.3f} |")
    lines += ["", f"## Time to a {100 * report['tol']:g} %-accurate working frequency", "",
              "| order | size mm | tets | dofs | ranks | f_working Hz | error % | WeldSim s | bare s | WeldSim/bare |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["timings"]:
        lines.append(f"| P{r['order']} | {r['size_mm']:g} | {r['n_cells']} | {r['n_dofs']} | {r['ranks']} | "
                     f"{r['f_working_Hz']:.2f} | {100 * r['rel_error']:+.3f} | {r['weldsim_best_s']:.2f} | "
                     f"{r['bare_best_s']:.2f} | {r['ratio']:.3f} |")
    lines += ["", "All timed repeats (s): " + "; ".join(
        f"P{r['order']}/{r['ranks']} rank(s): WeldSim {', '.join(f'{t:.2f}' for t in r['weldsim_times_s'])}, "
        f"bare {', '.join(f'{t:.2f}' for t in r['bare_times_s'])}" for r in report["timings"]), ""]
    prof = [r for r in report["timings"] if r.get("profile_rank0_s")]
    if prof:
        lines += ["## Where solve_modal spends its time (cProfile, rank 0, one extra run)", ""]
        for r in prof:
            lines.append(f"P{r['order']}, {r['ranks']} rank(s): " + ", ".join(
                f"{k} {v:.2f} s" for k, v in r["profile_rank0_s"].items()))
        lines.append("")
    if report.get("unreached"):
        lines += ["Not reached within the sweep: " + ", ".join(report["unreached"]), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main(argv=None) -> None:
    args = parse_args(argv)
    from weldsim_hpc.case_checks import resolve_case_materials

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    case = _case()
    materials, problems = resolve_case_materials(case)
    material = next(iter(materials.values()))
    volume = case.geometry.volume_m3()
    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"WeldSim modal benchmark: {CASE.name}, target {case.target_frequency_Hz:g} Hz, "
          f"{material.name}; work dir {work}", flush=True)

    print("Reference (P2, Richardson):", flush=True)
    ref_pts = [frequency(work, 2, s, material) for s in args.ref_sizes]
    rich = richardson([(h_eff(volume, r["n_cells"]), r["f_working_Hz"]) for r in ref_pts])
    f_ref = rich["f_inf_Hz"]
    reference = {**rich, "sizes_mm": args.ref_sizes, "values_Hz": [r["f_working_Hz"] for r in ref_pts],
                 "dofs": [r["n_dofs"] for r in ref_pts], "finest_Hz": ref_pts[-1]["f_working_Hz"],
                 "finest_dofs": ref_pts[-1]["n_dofs"]}
    print(f"  reference f_working = {f_ref:.2f} Hz (p = {rich['p']}, finest {ref_pts[-1]['f_working_Hz']:.2f} Hz)",
          flush=True)

    sweeps, chosen, unreached = [], {}, []
    for order, sizes in ((2, args.p2_sizes), (1, args.p1_sizes)):
        print(f"Sweep P{order}:", flush=True)
        for s in sizes:
            r = frequency(work, order, s, material)
            err = (r["f_working_Hz"] - f_ref) / f_ref
            sweeps.append({"order": order, "size_mm": s, "n_cells": r["n_cells"], "n_dofs": r["n_dofs"],
                           "f_working_Hz": r["f_working_Hz"], "rel_error": err})
            if abs(err) <= args.tol:
                chosen[order] = s
                break
        else:
            mine = [row for row in sweeps if row["order"] == order]
            affordable = [row for row in mine if row["n_dofs"] <= args.max_timed_dofs] or mine[:1]
            chosen[order] = affordable[-1]["size_mm"]
            unreached.append(f"P{order}: finest swept {sizes[-1]:g} mm is {100 * mine[-1]['rel_error']:+.3f} % off; "
                             f"timed at {chosen[order]:g} mm ({100 * affordable[-1]['rel_error']:+.3f} %), "
                             "so its time is a LOWER BOUND of the time to the tolerance")

    timings = []
    for order in (2, 1):
        s = chosen[order]
        for ranks in args.ranks:
            out = work / f"time_P{order}_h{s:g}mm_n{ranks}.json"
            extra = ["--profile"] if ranks == 1 else []
            job = mpi_argv(ranks, HERE / "weldsim_modal_worker.py", str(CASE), str(mesh_dir(work, s)),
                            "--order", str(order), "--repeats", str(args.repeats), "--bare", *extra,
                            "--json", str(out))
            t0 = time.perf_counter()
            r = run_job(job, out, work / "jobs.log")
            w, b = r["weldsim"], r["bare"]
            row = {"order": order, "size_mm": s, "ranks": ranks, "n_cells": r["n_cells"], "n_dofs": r["n_dofs"],
                   "f_working_Hz": w["f_working_Hz"], "f_working_bare_Hz": b["f_working_Hz"],
                   "rel_error": (w["f_working_Hz"] - f_ref) / f_ref,
                   "weldsim_best_s": w["best_s"], "bare_best_s": b["best_s"], "ratio": r["ratio_weldsim_over_bare"],
                   "weldsim_times_s": w["times_s"], "bare_times_s": b["times_s"],
                   "weldsim_warmup_s": w["warmup_s"], "bare_warmup_s": b["warmup_s"],
                   "weldsim_eps_iterations": w["iterations"], "bare_eps_iterations": b["iterations"],
                   "weldsim_n_converged": w["n_converged"], "bare_n_converged": b["n_converged"],
                   "profile_rank0_s": w.get("profile_rank0_s")}
            timings.append(row)
            print(f"  P{order} h={s:g} mm, {ranks} rank(s): WeldSim {w['best_s']:.2f} s, bare {b['best_s']:.2f} s, "
                  f"ratio {row['ratio']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    report = {"benchmark": "modal_stepped_horn", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": shlex.join([".venv/bin/python", "benchmarks/modal_stepped_horn.py", *(argv or sys.argv[1:])]),
              "case": str(CASE.relative_to(ROOT)), "material": material.name, "tol": args.tol,
              "repeats": args.repeats, "ratio_target": RATIO_TARGET, "mesh_settings": {
                  "curvature_segments": case.mesh.curvature_segments, "refine": "defaults (size/2 near the output face)"},
              "reference": reference, "sweeps": sweeps, "chosen_size_mm": {f"P{k}": v for k, v in chosen.items()},
              "unreached": unreached, "timings": timings, "machine": machine_info(),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "total_runtime_s": time.perf_counter() - started}
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    md = markdown(report)
    stem.with_suffix(".md").write_text(md + "\n")
    print()
    print(md)
    print(f"\nwritten {stem.with_suffix('.json')} and .md in {report['total_runtime_s']:.0f} s")


if __name__ == "__main__":
    main()
