"""The local single-node Slurm (slurm/local-cluster) and the job scripts in slurm/.

Real Slurm throughout: munge, slurmdbd on the local MariaDB, slurmctld, slurmd. MPI runs
under `srun --mpi=pmix`. This process launches jobs and never imports mpi4py/dolfinx.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from datetime import datetime
from pathlib import Path

import pytest

from .conftest import REPO, run, run_start_sh

EXAMPLE = REPO / "examples" / "horn_20khz_stepped_modal.toml"
RUN_CASE = REPO / "slurm" / "run_case.sbatch"
SWEEP = REPO / "slurm" / "sweep_array.sbatch"


def _config(name: str) -> str:
    out = run(["scontrol", "show", "config"], timeout=60).stdout
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    raise AssertionError(f"{name} not in scontrol show config")


def _run_dirs(runs_root: Path) -> list[Path]:
    return sorted(p for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith("."))


# --- the cluster -------------------------------------------------------------------------

def test_start_sh_is_idempotent_and_fast_when_up(slurm_cluster):
    """The fixture started (or found) the cluster; two more calls change nothing and are quick."""
    for _ in range(2):
        proc, seconds = run_start_sh(timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "is up" in proc.stdout
        assert "starting" not in proc.stdout, f"a warm start.sh restarted something:\n{proc.stdout}"
        assert seconds < 20, f"a warm start.sh took {seconds:.1f} s:\n{proc.stdout}"
    state = run(["sinfo", "--noheader", "--nodes", slurm_cluster.node, "--format=%T"], timeout=60).stdout.strip()
    assert state in ("idle", "mixed", "allocated"), state


def test_cluster_configuration(slurm_cluster):
    """The settings SLURM-LOCAL.md found to work here, and accounting through slurmdbd."""
    assert _config("ProctrackType") == "proctrack/linuxproc"
    assert _config("TaskPlugin") == "task/none"
    assert _config("SelectType") == "select/cons_tres"
    assert "CR_CORE" in _config("SelectTypeParameters").upper()
    assert _config("MpiDefault") == "none"
    assert _config("ReturnToService") == "2"
    assert _config("AccountingStorageType") == "accounting_storage/slurmdbd"
    assert _config("JobAcctGatherType") == "jobacct_gather/linux"
    part = run(["scontrol", "show", "partition", slurm_cluster.partition], timeout=60).stdout
    assert "OverSubscribe=YES" in part
    mode = stat.S_IMODE(os.stat("/etc/slurm/slurmdbd.conf").st_mode)
    assert mode == 0o600, oct(mode)
    clusters = run(["sacctmgr", "--noheader", "--parsable2", "show", "cluster", "format=cluster"], timeout=60)
    assert slurm_cluster.cluster_name in clusters.stdout.split()


def test_srun_pmix_two_ranks(slurm_cluster, tmp_path):
    """`srun --mpi=pmix -n 2 python -c 'mpi4py ... size'` inside a batch job prints 2 twice."""
    script = tmp_path / "two_ranks.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"exec srun --mpi=pmix -n 2 {sys.executable} -c "
        "'from mpi4py import MPI; print(MPI.COMM_WORLD.size)'\n")
    out = tmp_path / "two_ranks.out"
    job = slurm_cluster.sbatch("srun-pmix", ["--ntasks=2", f"--output={out}", str(script)])
    rows = slurm_cluster.wait(job, timeout=300)
    assert [r.state for r in rows] == ["COMPLETED"], (rows, out.read_text())
    assert out.read_text().split() == ["2", "2"], out.read_text()


def test_sacct_reports_completed_and_failed_jobs(slurm_cluster, tmp_path):
    ok = slurm_cluster.sbatch("sacct-ok", [f"--output={tmp_path / 'ok.out'}", "--wrap", "srun hostname"])
    bad = slurm_cluster.sbatch("sacct-exit3", [f"--output={tmp_path / 'bad.out'}", "--wrap", "exit 3"])
    [row] = slurm_cluster.wait(ok, timeout=300)
    assert (row.state, row.exit_code, row.nodes) == ("COMPLETED", "0:0", slurm_cluster.node)
    assert row.start != "Unknown" and row.end != "Unknown"
    steps = {r.job_id: r.state for r in slurm_cluster.sacct(ok)}
    assert steps.get(f"{ok}.batch") == "COMPLETED" and steps.get(f"{ok}.0") == "COMPLETED", steps
    [row] = slurm_cluster.wait(bad, timeout=300)
    assert (row.state, row.exit_code) == ("FAILED", "3:0")


# --- slurm/run_case.sbatch and slurm/sweep_array.sbatch ------------------------------------

def test_job_scripts_share_one_body():
    """sbatch copies a script away, so the two cannot source a common file: their shared
    part is duplicated and must stay identical."""
    marker = "# === shared body"

    def body(path: Path) -> str:
        text = path.read_text()
        assert marker in text, path
        return text[text.index(marker):]

    assert body(RUN_CASE) == body(SWEEP)


@pytest.mark.timeout(900)
def test_run_case_on_two_ranks(slurm_cluster, tmp_path):
    """The CI preset of the stepped horn on 2 ranks: completed, metrics, provenance with 2 ranks."""
    runs_root = tmp_path / "runs"
    out = tmp_path / "case.out"
    job = slurm_cluster.sbatch(
        "run-case", ["--ntasks=2", f"--output={out}", str(RUN_CASE), "examples/horn_20khz_stepped_modal.toml",
                     "--preset", "ci"],
        env=slurm_cluster.env(WELDSIM_RUNS_ROOT=str(runs_root)))
    [row] = slurm_cluster.wait(job, timeout=780)
    log = out.read_text()
    assert (row.state, row.exit_code) == ("COMPLETED", "0:0"), log
    [run_dir] = _run_dirs(runs_root)
    metrics = json.loads((run_dir / "results" / "metrics.json").read_text())
    assert 19000 < metrics["f_working_Hz"]["value"] < 21000, metrics["f_working_Hz"]
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["ranks"] == 2
    assert json.loads((run_dir / "case.json").read_text())["solver"]["ranks"] == 2
    [attempt] = json.loads((run_dir / "attempts.json").read_text())
    assert (attempt["scheduler_job_id"], attempt["exit_code"]) == (job, 0)
    assert "2 rank(s)" in (run_dir / "solver.log").read_text()
    assert f"ended with exit code 0 (completed)" in log
    steps = {r.job_id: r for r in slurm_cluster.sacct(job)}
    assert steps[f"{job}.0"].state == "COMPLETED", steps  # the srun step: python -m weldsim_hpc.run


def test_run_case_invalid_case_exits_2(slurm_cluster, tmp_path):
    """A case path full of shell characters stays one argument; an invalid case ends the job with 2."""
    weird = tmp_path / "a dir; $(touch pwned) 'q'" / "bad case `x`.toml"
    weird.parent.mkdir()
    weird.write_text('name = "broken"\nanalysis = "no_such_analysis"\n')
    out = tmp_path / "bad.out"
    job = slurm_cluster.sbatch("bad-case", [f"--output={out}", str(RUN_CASE), str(weird)],
                               env=slurm_cluster.env(WELDSIM_RUNS_ROOT=str(tmp_path / "runs")))
    [row] = slurm_cluster.wait(job, timeout=300)
    log = out.read_text()
    assert (row.state, row.exit_code) == ("FAILED", "2:0"), log
    assert "invalid case" in log and "analysis" in log, log
    assert not (REPO / "pwned").exists() and not (tmp_path / "pwned").exists()
    assert not (tmp_path / "runs").exists() or not _run_dirs(tmp_path / "runs")


def _intervals(rows) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(r.start), datetime.fromisoformat(r.end)) for r in rows]


def _max_concurrent(intervals) -> int:
    """Most intervals [start, end) open at one time (one ending as another starts: not overlapping)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda ev: (ev[0], ev[1]))
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


@pytest.mark.timeout(900)
def test_sweep_array_throttled(slurm_cluster, tmp_path):
    """4 cases, --array=0-3%2: all complete, never more than 2 at once, and 2 did overlap."""
    text = EXAMPLE.read_text()
    cases_dir = tmp_path / "sweep cases"  # spaces in the paths on purpose
    cases_dir.mkdir()
    lines = ["# a stepped-horn sweep over the output section's length", ""]
    for i, length in enumerate((0.06085, 0.0615, 0.0625, 0.0635)):
        case = cases_dir / f"horn {i}.toml"
        case.write_text(text.replace("length_output_m = 0.06085", f"length_output_m = {length}"))
        lines.append(f"  {case}  ")
    assert text.count("length_output_m = 0.06085") == 1
    case_list = tmp_path / "cases.txt"
    case_list.write_text("\n".join(lines) + "\n")
    runs_root = tmp_path / "runs"
    # --oversubscribe: two tasks may share a core if another user's job holds the other one,
    # so the only limit on concurrency is the %2 throttle under test
    job = slurm_cluster.sbatch(
        "sweep", ["--array=0-3%2", "--oversubscribe", f"--output={tmp_path / 'sweep-%A_%a.out'}", str(SWEEP),
                  str(case_list), "--preset", "ci", "--backend", "preview"],
        env=slurm_cluster.env(WELDSIM_RUNS_ROOT=str(runs_root)))
    rows = slurm_cluster.wait(job, timeout=780, count=4)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("sweep-*.out")))
    assert sorted(r.job_id for r in rows) == [f"{job}_{k}" for k in range(4)], rows
    assert all(r.state == "COMPLETED" and r.exit_code == "0:0" for r in rows), (rows, logs)
    concurrent = _max_concurrent(_intervals(rows))
    assert concurrent <= 2, rows
    assert concurrent == 2, f"no two array tasks overlapped: {rows}"
    run_dirs = _run_dirs(runs_root)
    assert len(run_dirs) == 4
    cases_run = set()
    task_ids = set()
    for run_dir in run_dirs:
        assert (run_dir / "results" / "metrics.json").is_file(), run_dir
        case = json.loads((run_dir / "case.json").read_text())
        cases_run.add(case["geometry"]["length_output_m"])
        [attempt] = json.loads((run_dir / "attempts.json").read_text())
        assert attempt["exit_code"] == 0
        task_ids.add(attempt["scheduler_job_id"])
    assert cases_run == {0.06085, 0.0615, 0.0625, 0.0635}
    assert task_ids == {f"{job}_{k}" for k in range(4)}


def test_max_concurrent_counts_touching_intervals_as_sequential():
    t = [datetime(2026, 1, 1, 0, 0, s) for s in range(10)]
    assert _max_concurrent([(t[0], t[3]), (t[3], t[5])]) == 1
    assert _max_concurrent([(t[0], t[3]), (t[1], t[5]), (t[2], t[4])]) == 3
    assert _max_concurrent([(t[0], t[3]), (t[0], t[3]), (t[3], t[6]), (t[3], t[6])]) == 2
