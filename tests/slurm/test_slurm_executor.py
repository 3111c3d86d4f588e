"""SlurmExecutor on the real single-node Slurm: results, sweeps, cancel, walltime, node
failure, killed ranks and a killed agent (the issue's "must show" list).

Every run goes through dask-jobqueue's SLURMCluster: its worker job is the run's allocation
and the run is an `srun --mpi=pmix` step in it. References come from the LocalExecutor on
the same machine and the same prepared case. The test process never imports mpi4py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime

import pytest

from tests.executors._local_helpers import (  # noqa: F401  (tracker is a fixture)
    assert_metrics_close,
    ci_case,
    is_live,
    endless_case,
    long_case,
    physics_metrics,
    processes_mentioning,
    tracker,
    wait_final,
    wait_for,
    wait_gone,
    wait_running,
)
from weldsim_hpc.executors import slurm_text as st
from weldsim_hpc.run_paths import read_attempts
from weldsim_hpc.states import RunState

pytestmark = pytest.mark.timeout(900)


def prepare(case, root, ranks):
    from weldsim_hpc.prepare import prepare_run

    return prepare_run(case, root, ranks=ranks)


def states(record) -> list[str]:
    return [s.value for _, s, _ in record.history]


def sacct(job_ids):
    out = subprocess.run(st.sacct_command(job_ids), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return st.parse_sacct(out.stdout)


def jobs_named(prefix: str) -> dict[str, st.SacctRecord]:
    """Every sacct job (latest record) whose name starts with prefix, since an hour ago."""
    out = subprocess.run(["sacct", *st.SACCT_ARGS, "--starttime=now-1hour", "--allusers"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {j: r for j, r in st.parse_sacct(out.stdout).items() if r.name.startswith(prefix)}


def squeue_named(prefix: str) -> list[str]:
    out = subprocess.run(["squeue", "--noheader", "--format=%i|%j|%T"], capture_output=True, text=True, timeout=60)
    return [line for line in out.stdout.splitlines() if line.split("|")[1].startswith(prefix)]


def worker_processes(run_ids) -> list[int]:
    """Live dask workers of these runs' jobs (or of sweep jobs), found by their SLURM_JOB_NAME."""
    from pathlib import Path

    names = tuple(f"SLURM_JOB_NAME=weldsim-{r}-".encode() for r in run_ids) + (b"SLURM_JOB_NAME=weldsim-sweep\0",)
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline, environ = (d / "cmdline").read_bytes(), (d / "environ").read_bytes() + b"\0"
        except OSError:
            continue
        if b"distributed.cli.dask_worker" in cmdline and any(n in environ for n in names) and is_live(int(d.name)):
            found.append(int(d.name))
    return found


def no_jobs_left(run_ids, timeout=60):
    """No worker job of these runs (nor an idle sweep worker) stays in squeue, and no dask
    worker process outlives its job (a worker must die with its allocation)."""
    def gone():
        return (not any(squeue_named(f"weldsim-{r}") for r in run_ids) and not squeue_named("weldsim-sweep")
                and not worker_processes(run_ids))

    wait_for(gone, timeout, f"the worker jobs of {list(run_ids)} and their processes to go", interval=1)


def run_local_reference(tracker, case, ranks):
    root = tracker.root("reference")
    agent = tracker.agent(root)
    paths = prepare(case, root, ranks)
    agent.submit(paths.run_id, "local", {"ntasks": ranks})
    record = agent.wait(paths.run_id, 600)
    assert record.state is RunState.COMPLETED, record
    return physics_metrics(paths)


def node_state(node: str) -> str:
    out = subprocess.run(["sinfo", "--noheader", "--nodes", node, "--format=%T"], capture_output=True, text=True,
                         timeout=60)
    return out.stdout.strip()


def test_two_rank_slurm_run_has_the_metrics_of_the_local_run(slurm_cluster, tracker):
    case = ci_case()
    want = run_local_reference(tracker, case, 2)
    root = tracker.root()
    agent = tracker.agent(root)
    paths = prepare(case, root, 2)
    agent.submit(paths.run_id, "slurm", {"ntasks": 2})
    record = agent.wait(paths.run_id, 600)
    assert record.state is RunState.COMPLETED, (record.reason, agent.logs(paths.run_id))
    assert_metrics_close(physics_metrics(paths), want, rel=1e-9)
    (attempt,) = read_attempts(paths)
    job = attempt["scheduler_job_id"]
    assert job and job.isdigit()
    import json

    assert json.loads(paths.provenance_json.read_text())["ranks"] == 2  # comm.size under srun
    rec = sacct([job])[job]
    assert rec.name == f"weldsim-{paths.run_id}-a1"
    step = rec.step_record("0")
    assert step is not None and step.state == "COMPLETED" and step.exit_code == 0, rec
    no_jobs_left([paths.run_id], timeout=30)  # the allocation ends with the run


def _intervals(recs):
    return [(r.start.timestamp(), r.end.timestamp()) for r in recs]


def _max_concurrency(intervals) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = best = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return best


def test_four_sweep_cases_share_two_adaptive_workers(slurm_cluster, tracker):
    root = tracker.root()
    agent = tracker.agent(root, slurm_sweep_max_jobs=2)
    case = ci_case()  # 3000 steps (≈10 s here): long enough that the second worker joins mid-run
    case = case.model_copy(update={"time": case.time.model_copy(update={"end_s": 30.0, "checkpoint_every": 100})})
    runs = [prepare(case, root, 1) for _ in range(4)]
    for paths in runs:
        agent.submit(paths.run_id, "slurm", {"ntasks": 1})
    for paths in runs:
        record = agent.wait(paths.run_id, 600)
        assert record.state is RunState.COMPLETED, (record.reason, agent.logs(paths.run_id))
    attempts = [read_attempts(p)[0] for p in runs]
    spans = [(a["start_time"], a["end_time"]) for a in attempts]
    assert _max_concurrency(spans) == 2, spans  # at most 2 at once, and 2 did overlap
    # the same from Slurm: each run is step 0.. of a sweep worker job; steps' Start/End
    jobs = sorted({a["scheduler_job_id"] for a in attempts})
    assert 1 <= len(jobs) <= 4
    records = sacct(jobs)
    assert all(r.name == "weldsim-sweep" for r in records.values())
    steps = [s for r in records.values() for s in r.steps if s.step not in ("batch", "extern")]
    assert len(steps) == 4 and all(s.state == "COMPLETED" for s in steps), steps
    assert _max_concurrency(_intervals(steps)) == 2
    agent.close()  # the sweep cluster goes with the agent: no idle allocation stays
    no_jobs_left([p.run_id for p in runs], timeout=60)


def test_cancel_a_running_slurm_job(slurm_cluster, tracker):
    root = tracker.root()
    agent = tracker.agent(root)
    paths = prepare(long_case(), root, 2)
    agent.submit(paths.run_id, "slurm", {"ntasks": 2})
    entry = wait_running(paths, 300, rows=2)
    procs = processes_mentioning(os.fspath(paths.root))
    assert procs, "the run's processes were not found"
    record = agent.cancel(paths.run_id)
    assert record.state is RunState.CANCELLED, record
    assert wait_gone(procs, 30) == {}, "processes of the cancelled run are still alive"
    assert paths.progress_h5.exists() and paths.case_json.exists()
    time.sleep(3)  # the agent follows on: nothing starts again
    assert len(read_attempts(paths)) == 1
    assert agent.status(paths.run_id).state is RunState.CANCELLED
    job = entry["scheduler_job_id"]
    wait_for(lambda: st.final_state_or_none(sacct([job]), job) is not None, 60, "sacct's final state")
    assert sacct([job])[job].state == "CANCELLED"
    no_jobs_left([paths.run_id])


def test_walltime_usr1_checkpoints_ends_interrupted_and_resume_continues(slurm_cluster, tracker):
    # far longer than any walltime here: the run can only end by USR1, on any machine
    case = endless_case()
    root = tracker.root()
    agent = tracker.agent(root, slurm_signal_lead_s=60)
    paths = prepare(case, root, 2)
    agent.submit(paths.run_id, "slurm", {"ntasks": 2, "walltime": "2"})  # Slurm: 2 minutes
    record = wait_final(paths, 400)
    assert record.state is RunState.INTERRUPTED, (record.reason, agent.logs(paths.run_id))
    time.sleep(5)
    assert len(read_attempts(paths)) == 1 and agent.status(paths.run_id).resubmissions == 0  # never automatic
    assert read_attempts(paths)[0]["exit_code"] == 4
    from weldsim_hpc.progress_reader import ProgressReader

    import h5py

    with h5py.File(paths.progress_h5, "r") as f:  # attempt 1's file: USR1 made it write a checkpoint
        last_checkpoint_t = float(f["checkpoints/index"][-1]["t"])
    assert last_checkpoint_t > 0.0
    agent.submit(paths.run_id, resources={"ntasks": 2, "walltime": "2"}, resume=True)
    record = agent.wait(paths.run_id, 400)
    assert record.state is RunState.INTERRUPTED, (record.reason, agent.logs(paths.run_id))
    assert [a["exit_code"] for a in read_attempts(paths)] == [4, 4]
    with ProgressReader(paths.progress_h5) as reader:
        second = reader.poll().rows
    assert second[0].t > 0.0, "the second attempt started from t = 0, not from the checkpoint"
    # (progress.h5 holds the current attempt's rows) it went on from attempt 1's last checkpoint
    assert second[0].t == pytest.approx(last_checkpoint_t + case.time.dt_s) and second[-1].t > last_checkpoint_t
    no_jobs_left([paths.run_id])


def test_node_failure_is_lost_then_resubmitted_once_and_resumes(slurm_cluster, tracker):
    case = long_case()
    want = run_local_reference(tracker, case, 2)
    root = tracker.root()
    agent = tracker.agent(root)
    paths = prepare(case, root, 2)
    agent.submit(paths.run_id, "slurm", {"ntasks": 2})
    wait_running(paths, 300, ckpts=1)
    node = slurm_cluster.node
    subprocess.run(["scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=weldsim-test"], check=True,
                   timeout=60)
    try:
        wait_for(lambda: "lost" in states(agent.status(paths.run_id)), 180, "the run to be marked lost")
    finally:  # bring the node back whatever happened (ReturnToService=2 may already have)
        def back():
            subprocess.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"], capture_output=True,
                           timeout=60)
            return "down" not in node_state(node) and "drain" not in node_state(node)

        wait_for(back, 180, f"node {node} to return to service", interval=2)
    record = agent.wait(paths.run_id, 600)
    assert record.state is RunState.COMPLETED, (record.reason, agent.logs(paths.run_id))
    assert record.resubmissions == 1
    assert [a["attempt"] for a in read_attempts(paths)] == [1, 2]
    assert_metrics_close(physics_metrics(paths), want, rel=1e-6)
    jobs = jobs_named(f"weldsim-{paths.run_id}-")
    assert sorted(r.name for r in jobs.values()) == [f"weldsim-{paths.run_id}-a1", f"weldsim-{paths.run_id}-a2"]
    assert {r.state for r in jobs.values()} >= {"NODE_FAIL"}
    no_jobs_left([paths.run_id])


def test_sigkill_of_every_rank_fails_with_the_reason(slurm_cluster, tracker):
    root = tracker.root()
    agent = tracker.agent(root)
    paths = prepare(endless_case(), root, 2)
    agent.submit(paths.run_id, "slurm", {"ntasks": 2})
    wait_running(paths, 300, rows=2)
    ranks = {pid: t for pid, t in processes_mentioning(os.fspath(paths.root)).items()
             if b"weldsim_hpc.run" in open(f"/proc/{pid}/cmdline", "rb").read()
             and not open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"srun")}
    assert len(ranks) == 2, ranks
    for pid in ranks:
        os.kill(pid, signal.SIGKILL)
    record = wait_final(paths, 180)
    assert record.state is RunState.FAILED, record
    assert "SIGKILL" in record.reason or "exit code" in record.reason, record.reason
    time.sleep(3)
    assert len(read_attempts(paths)) == 1  # a clear failure is not resubmitted
    no_jobs_left([paths.run_id])


def test_sigkilled_agent_a_new_agent_adopts_the_slurm_run(slurm_cluster, tracker):
    case = long_case()
    want = run_local_reference(tracker, case, 2)
    root = tracker.root()
    client = tracker.daemon(root)
    paths = prepare(case, root, 2)
    client.request("submit", run_id=paths.run_id, executor="slurm", resources={"ntasks": 2})
    wait_running(paths, 300, ckpts=1)
    pid = int(client.info["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not is_live(pid), 30, "the agent to die")
    tracker.daemon(root)  # a new agent: adopts from the run directory and sacct
    record = wait_final(paths, 600)
    assert record.state is RunState.COMPLETED, record
    assert_metrics_close(physics_metrics(paths), want, rel=1e-6)
    attempts = read_attempts(paths)
    assert len(attempts) in (1, 2) and record.resubmissions == len(attempts) - 1
    jobs = jobs_named(f"weldsim-{paths.run_id}-")
    assert len(jobs) == len(attempts), jobs  # exactly one job per attempt
    spans = sorted((r.start.timestamp(), (r.end or datetime.now()).timestamp()) for r in jobs.values())
    assert _max_concurrency(spans) == 1 or all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    no_jobs_left([paths.run_id], timeout=90)
