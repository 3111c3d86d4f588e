"""Benchmark: submit → first progress row and → completed, LocalExecutor vs SlurmExecutor vs a plain sbatch.

    .venv/bin/python benchmarks/executors.py                # 3 repeats, writes results/executors.{json,md}
    .venv/bin/python benchmarks/executors.py --repeats 5

One prepared case (examples/tab_weld_cu_al_transient.toml at preset ci, 2 ranks; every run
is prepared afresh with prepare_run before any timing, never timed), three ways to run it,
side by side in one process:

1. **local** — an in-process ``Agent(load_config({"runs_root": …})).start()`` and
   ``agent.submit(run_id, "local", {"ntasks": 2})``: a dask LocalCluster task that starts
   ``mpirun -n 2 python -m weldsim_hpc.run RUN_DIR``.
2. **slurm** — the same agent, executor "slurm": a dask-jobqueue SLURMCluster of its own
   per 2-rank run, whose one worker job is the allocation; the task starts
   ``srun --mpi=pmix --export=ALL -n 2 python -m weldsim_hpc.run RUN_DIR`` in it.
3. **sbatch** — no dask: ``sbatch`` of a script (`render_sbatch`) with the executor's own
   directives (`slurm_text.job_extra_directives`: --ntasks, --time, --signal, --no-requeue,
   --export allow-list) that execs the same srun step with the same environment (the
   launch allow-list, one OpenMP/BLAS thread, the job's SLURM_* variables).

The first local submit and the first Slurm submit of the fresh agent are timed apart from
the later ones ("first submit": the local one starts the LocalCluster inside submit();
every 2-rank Slurm run starts a SLURMCluster of its own, so Slurm has no warm cluster and
its first submit differs only by the executor's creation). dask, distributed and
dask_jobqueue are imported before any timing (their import times are reported apart).
Then --repeats rounds of local, slurm, sbatch, the order rotated each round.

Times are from the submit call (``time.time()`` just before agent.submit / sbatch):
  first row   the first progress row's own wall_s in <run>/progress.h5 (polled every
              --poll-s with a ProgressReader opened and closed each time)
  completed   as the submitter sees it: agent.wait() returns (the agent's monitor wrote the
              final state; poll_s 1 s, the Slurm executor closes the worker job first) or,
              for sbatch, the job has left squeue (polled every 0.2 s once the run wrote
              its final status row)
and, for the breakdown: submit() returned, sacct Submit/Start/End of the job (1-s
resolution), the step launched (attempts.json start_time; for sbatch the script's own
timestamp just before srun), progress.h5 created (header started_unix), the run's final
status row. Figures are recorded, never asserted; the machine is shared (compare ratios).

Before timing, the script waits (every 30 s, up to --wait-max-s) until squeue is empty and
no pytest process runs the Slurm tests (they set the node DOWN at times); during the run it
samples squeue and pytest processes every 2 s and flags every run that overlapped foreign
activity. At the end: the agent is closed, no job of ours may remain in squeue and no dask
worker of ours may live (left-overs are cancelled/killed and reported). This process never
imports mpi4py or dolfinx.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PYTHON = sys.executable
CASE = ROOT / "examples" / "tab_weld_cu_al_transient.toml"
START_SH = ROOT / "slurm" / "local-cluster" / "start.sh"
MODES = ("local", "slurm", "sbatch")
#: job names of the plain-sbatch runs start with this (the executor's are weldsim-<run id>-a<n>)
SBATCH_PREFIX = "wsbench-"
MPI_MODULES = ("mpi4py", "dolfinx", "petsc4py", "slepc4py")

log = logging.getLogger("weldsim.bench.executors")


class BenchError(RuntimeError):
    """The benchmark cannot go on (busy cluster, failed run, Slurm error)."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="rounds of local, slurm, sbatch after the first submits")
    p.add_argument("--case", default=str(CASE))
    p.add_argument("--preset", default="ci")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's default, as the "
                                                     "executor with slurm_partition unset)")
    p.add_argument("--poll-s", type=float, default=0.1, help="progress.h5 poll interval")
    p.add_argument("--run-timeout-s", type=float, default=600.0)
    p.add_argument("--wait-max-s", type=float, default=1200.0, help="wait at most this long for a quiet cluster")
    p.add_argument("--no-wait", action="store_true", help="do not wait for a quiet cluster (numbers may suffer)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed mpirun run before timing")
    p.add_argument("--work-dir", default=None, help="runs root (default: a fresh directory under $TMPDIR, "
                                                    "removed at the end unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep the run directories")
    p.add_argument("--out", default=str(RESULTS / "executors"))
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


# --------------------------------------------------------------------------- the plain sbatch job

def render_sbatch(run_dir: str | os.PathLike, *, job_name: str, ntasks: int = 2, python: str = PYTHON,
                  partition: str | None = None, walltime: str = "01:00:00", mpi: str = "pmix",
                  signal_lead_s: int | None = 60) -> str:
    """A batch script that runs the prepared run at `run_dir` as one srun step, without dask.

    The allocation has the SlurmExecutor's directives for the same run
    (`slurm_text.job_extra_directives` of the same SlurmResources: --ntasks, --cpus-per-task,
    --time, --partition, --signal=USR1@lead, --no-requeue, --export allow-list); the step is
    ``srun --mpi=pmix --export=ALL -n N PYTHON -m weldsim_hpc.run RUN_DIR``
    (`slurm_text.srun_command`/`run_argv`), started from RUN_DIR with the environment the
    executor gives it (`slurm_text.srun_environment`: launch's allow-list, one OpenMP/BLAS
    thread, the job's SLURM_*), output appended to RUN_DIR/launcher.log. The batch shell
    execs the step, so the job's exit code is the run's. Before srun it prints
    ``weldsim-bench: step_start=<UNIX s>`` to the job's output.

    run_dir must be a prepared run (RunPaths: named after a valid run id, case.json present);
    it appears in the script shell-quoted only (pass --output on sbatch's command line, not
    here). Partition, job name and walltime are validated as the executor validates them
    (SlurmInputError), so nothing can add a directive of its own.
    """
    from weldsim_hpc.executors import slurm_text as st
    from weldsim_hpc.launch import ALLOWED_PREFIXES, ALLOWED_VARIABLES, FORCED_VARIABLES
    from weldsim_hpc.run_paths import RunPaths

    paths = RunPaths.from_dir(run_dir)
    if not paths.case_json.is_file():
        raise st.SlurmInputError(f"{paths.root} is not a prepared run (no case.json)")
    res = st.SlurmResources(ntasks=ntasks, nodes=None, walltime_s=st.parse_walltime(walltime),
                            partition=partition, signal_lead_s=signal_lead_s)
    directives = [f"--job-name={st.validate_job_name(job_name)}", *st.job_extra_directives(res)]
    for d in directives:  # all of it is ours and validated; a newline would still be one directive too many
        if "\n" in d or "\r" in d:
            raise st.SlurmInputError(f"directive {d!r} contains a line break")
    step = st.srun_command(ntasks, st.run_argv(paths.root, python=python), mpi=mpi)
    names = [*ALLOWED_VARIABLES, *(f"{p}*" for p in ALLOWED_PREFIXES), "SLURM_*"]
    forced = [f"{k}={v}" for k, v in FORCED_VARIABLES.items()]
    for item in [*names, *forced]:  # our own constants; checked, since they go into a case pattern
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\*?(=[A-Za-z0-9._:/@+-]*)?", item):
            raise st.SlurmInputError(f"environment entry {item!r} is not a variable name (pattern)")
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives),
             "# Generated by benchmarks/executors.py: the same srun step the SlurmExecutor starts in its",
             "# dask worker job, started by the batch shell itself (no dask).",
             "set -eu",
             f"run_dir={shlex.quote(os.fspath(paths.root))}",
             f"step_env=({' '.join(forced)})",
             "while IFS= read -r -d '' entry; do",
             '    case "${entry%%=*}" in',
             f"        {'|'.join(names)}) step_env+=(\"$entry\") ;;",
             "    esac",
             "done < <(env -0)",
             'cd "$run_dir"',
             "printf 'weldsim-bench: step_start=%s\\n' \"$(date +%s.%N)\"",
             f"printf '== plain sbatch job %s at %s: %s\\n' \"${{SLURM_JOB_ID:-?}}\" \"$(date +%Y-%m-%dT%H:%M:%S%z)\" "
             f"{shlex.quote(shlex.join(step))} >>launcher.log",
             f'exec env -i "${{step_env[@]}}" {shlex.join(step)} </dev/null >>launcher.log 2>&1',
             ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- Slurm and processes

def _run(argv: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def squeue_all() -> list[tuple[str, str, str]] | None:
    """(job id, name, state) of every job slurmctld lists; None if squeue failed."""
    try:
        out = _run(["squeue", "--noheader", "--format=%i|%T|%j"], timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    rows = []
    for line in out.stdout.splitlines():
        if line.strip():
            job, state, name = line.split("|", 2)
            rows.append((job.strip(), name, state.strip()))
    return rows


def in_squeue(job_id: str) -> bool | None:
    try:
        out = _run(["squeue", "--noheader", "--format=%T", f"--jobs={job_id}"], timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return False if "Invalid job id" in out.stderr else None
    return bool(out.stdout.strip())


def _proc_cmdline(pid: str) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def _proc_environ(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _is_live(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def pytest_processes() -> list[tuple[int, str, bool]]:
    """(pid, command line, runs the Slurm tests) of every live pytest process but this one."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid() or not _is_live(d.name):
            continue
        argv = _proc_cmdline(d.name)
        if not any("pytest" in a for a in argv[:3]):
            continue
        if argv and Path(argv[0]).name in ("timeout", "bash", "sh"):
            continue  # the wrapper; its pytest child is listed itself
        tests = [a for a in argv if a.startswith("tests") or "/tests" in a]
        slurm = any("tests/slurm" in a or a.rstrip("/") in ("tests", str(ROOT / "tests")) for a in tests) \
            and not any(a.startswith("--ignore") and "tests/slurm" in a for a in argv)
        if not tests:  # `pytest` alone collects everything
            slurm = True
        out.append((int(d.name), " ".join(argv)[:200], slurm))
    return out


def dask_workers() -> list[tuple[int, str]]:
    """(pid, SLURM_JOB_NAME) of live dask worker processes (`ps aux | grep dask_worker`)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or not _is_live(d.name):
            continue
        argv = _proc_cmdline(d.name)
        if any("dask_worker" in a or "dask-worker" in a for a in argv):
            env = _proc_environ(d.name).split(b"\0")
            name = next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"SLURM_JOB_NAME=")), "")
            out.append((int(d.name), name))
    return out


def cluster_busy() -> tuple[str | None, str | None]:
    """(why the Slurm cluster is not ours to time now, why the machine is busy otherwise);
    None, None: quiet. Another pytest (e.g. the MPI tests) loads the 2 cores but leaves Slurm alone."""
    jobs = squeue_all()
    if jobs is None:
        return "squeue failed", None
    if jobs:
        return f"{len(jobs)} job(s) in squeue: " + ", ".join(f"{j} {n} {s}" for j, n, s in jobs[:5]), None
    tests = pytest_processes()
    slurm_tests = [c for _, c, s in tests if s]
    if slurm_tests:
        return f"pytest with the Slurm tests is running: {slurm_tests[0]}", None
    if tests:
        return None, f"other pytest running: {tests[0][1]}"
    return None, None


def wait_for_quiet(max_wait_s: float, interval_s: float = 30.0) -> tuple[float, str | None]:
    """Wait until the Slurm cluster is ours (squeue empty, no Slurm tests) and, within the
    same budget, until no other pytest loads the machine. Returns (seconds waited, what
    still loads the machine or None). BenchError if the cluster is still in use after max_wait_s."""
    t0 = time.monotonic()
    while True:
        slurm, other = cluster_busy()
        waited = time.monotonic() - t0
        if slurm is None and (other is None or waited >= max_wait_s):
            return waited, other
        if waited >= max_wait_s:
            raise BenchError(f"the Slurm cluster was still in use after {waited:.0f} s ({slurm}); try again later "
                             "or pass --no-wait")
        print(f"  busy ({slurm or other}); waiting {interval_s:.0f} s ({waited:.0f} s so far)", flush=True)
        time.sleep(min(interval_s, max(1.0, max_wait_s - waited)))


class ActivityMonitor:
    """Samples squeue and pytest processes every `interval_s` in a thread: foreign activity."""

    def __init__(self, is_ours, interval_s: float = 2.0):
        self.is_ours = is_ours
        self.interval_s = interval_s
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-activity", daemon=True)

    def start(self) -> "ActivityMonitor":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            jobs = squeue_all() or []
            foreign = [f"{j} {n} {s}" for j, n, s in jobs if not self.is_ours(n)]
            tests = [c for _, c, _ in pytest_processes()]
            if foreign or tests:
                self.samples.append({"t": time.time(), "foreign_jobs": foreign, "pytest": tests,
                                     "loadavg": os.getloadavg()[0]})
            self._stop.wait(self.interval_s)

    def during(self, t0: float, t1: float) -> dict:
        inside = [s for s in self.samples if t0 <= s["t"] <= t1 + self.interval_s]
        return {"foreign_jobs": sorted({j for s in inside for j in s["foreign_jobs"]}),
                "pytest": sorted({c for s in inside for c in s["pytest"]})}


def node_states() -> str:
    """sinfo's node states (e.g. "idle"; "mixed", "allocated", "completing" while a job holds the node)."""
    try:
        return " ".join(sorted(set(_run(["sinfo", "--noheader", "--format=%T"], timeout=30).stdout.split())))
    except (OSError, subprocess.SubprocessError):
        return "?"


def settle(is_ours, timeout_s: float = 120.0, pause_s: float = 1.0) -> float:
    """Before the next run: wait until no job of ours is in squeue, the node is idle and no
    dask worker of ours lives (a cancelled worker job stays COMPLETING until its worker has
    exited, and would delay the next allocation); then pause_s. Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        jobs = [j for j, n, _ in (squeue_all() or []) if is_ours(n)]
        if not jobs and node_states() == "idle" and not [p for p, n in dask_workers() if is_ours(n)]:
            break
        time.sleep(0.5)
    time.sleep(pause_s)
    return time.monotonic() - t0


def sacct_times(job_id: str, timeout_s: float = 60.0) -> dict:
    """Submit/Start/End (UNIX s), State and ExitCode of the job and of its step 0; waits (up to
    timeout_s) until the job has an End. sacct prints whole seconds, truncated: each time is
    taken as the middle of its second (+0.5 s), i.e. within ±0.5 s."""
    deadline = time.monotonic() + timeout_s
    fields = "JobID,Submit,Start,End,State,ExitCode"
    out: dict = {}
    while True:
        proc = _run(["sacct", "--parsable2", "--noheader", f"--format={fields}", f"--jobs={job_id}"], timeout=30)
        rows = {}
        for line in proc.stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 6:
                rows[parts[0]] = parts
        job = rows.get(job_id)
        if job is not None and job[3] not in ("Unknown", ""):
            def ts(text):
                try:
                    return dt.datetime.fromisoformat(text).timestamp() + 0.5
                except ValueError:
                    return None
            out = {"submit": ts(job[1]), "start": ts(job[2]), "end": ts(job[3]), "state": job[4],
                   "exit_code": job[5]}
            step = rows.get(f"{job_id}.0")
            if step is not None:
                out["step0"] = {"start": ts(step[2]), "end": ts(step[3]), "state": step[4], "exit_code": step[5]}
            return out
        if time.monotonic() > deadline:
            return {"error": f"sacct has no end for job {job_id} after {timeout_s:.0f} s"}
        time.sleep(1.0)


# --------------------------------------------------------------------------- progress file

def progress_now(paths) -> dict:
    """What progress.h5 says now (opened and closed here): header start, first row, last status."""
    from weldsim_hpc.checkpoint import ProgressFormatError
    from weldsim_hpc.progress_reader import ProgressReader

    if not paths.progress_h5.exists():
        return {}
    try:
        with ProgressReader(paths.progress_h5) as reader:
            p = reader.poll()
            started = reader.header.started_unix
    except (OSError, KeyError, ValueError, ProgressFormatError):
        return {}
    out = {"started_unix": started}
    if p.rows:
        out["first_row"] = p.rows[0]._asdict()
        out["n_rows"] = len(p.rows)
    if p.status is not None:
        out["status"] = {"state": p.status.state.value, "wall_s": p.status.wall_s, "message": p.status.message}
    return out


def wait_first_row(paths, deadline: float, poll_s: float, ended) -> tuple[dict, float | None]:
    """Poll progress.h5 until it holds a progress row (or a final status, or `ended()`);
    (what it says, when this poll saw the row)."""
    while True:
        now = progress_now(paths)
        if "first_row" in now:
            return now, time.time()
        status = now.get("status", {}).get("state")
        if status not in (None, "running", "queued") or ended() or time.monotonic() > deadline:
            return now, None
        time.sleep(poll_s)


def wait_final_status(paths, deadline: float, poll_s: float, ended) -> dict:
    while True:
        now = progress_now(paths)
        if now.get("status", {}).get("state") not in (None, "running", "queued") or ended() \
                or time.monotonic() > deadline:
            return now
        time.sleep(poll_s)


# --------------------------------------------------------------------------- one timed run each

def prepare(args, root: Path):
    from weldsim_hpc.case_io import load_case
    from weldsim_hpc.prepare import prepare_run

    return prepare_run(load_case(Path(args.case), args.preset), root, ranks=args.ranks)


def _offsets(t0: float, marks: dict) -> dict:
    return {k: (None if v is None else v - t0) for k, v in marks.items()}


def time_agent_run(agent, paths, executor: str, args) -> dict:
    """submit → first progress row → completed through the agent; marks in UNIX s."""
    from weldsim_hpc.run_paths import read_attempts
    from weldsim_hpc.states import RunState

    deadline = time.monotonic() + args.run_timeout_s
    t0 = time.time()
    agent.submit(paths.run_id, executor, {"ntasks": args.ranks})
    returned = time.time()

    def ended():
        return agent.status(paths.run_id).state.is_terminal

    first, seen = wait_first_row(paths, deadline, args.poll_s, ended)
    try:
        record = agent.wait(paths.run_id, max(1.0, deadline - time.monotonic()))
        done_seen = time.time()
    except Exception as exc:  # noqa: BLE001 - a run that hangs is cancelled and reported, not fatal
        log.error("run %s (%s) did not end: %s; cancelling", paths.run_id, executor, exc)
        record = agent.cancel(paths.run_id)
        done_seen = None
    final = progress_now(paths)
    attempts = read_attempts(paths)
    attempt = attempts[-1] if attempts else {}
    job = attempt.get("scheduler_job_id")
    sacct = sacct_times(job) if job else {}
    marks = {"returned": returned, "job_submit": sacct.get("submit"), "alloc_start": sacct.get("start"),
             "launched": attempt.get("start_time"), "progress_created": final.get("started_unix"),
             "first_row": first.get("first_row", {}).get("wall_s"), "first_row_seen": seen,
             "final_status": final.get("status", {}).get("wall_s"), "done_seen": done_seen,
             "record_finished": record.finished_at, "job_end": sacct.get("end")}
    ok = record.state is RunState.COMPLETED and final.get("status", {}).get("state") == "completed"
    return {"mode": executor, "run_id": paths.run_id, "t_submit": t0, "ok": ok, "state": record.state.value,
            "reason": record.reason, "job_id": job, "sacct": sacct, "n_rows": final.get("n_rows"),
            "attempts": len(attempts), "marks": marks, "offsets": _offsets(t0, marks)}


def time_sbatch_run(paths, args, log_dir: Path) -> dict:
    """sbatch → first progress row → job gone from squeue; marks in UNIX s."""
    from weldsim_hpc.executors import slurm_text as st

    name = f"{SBATCH_PREFIX}{paths.run_id}"
    script = log_dir / f"{name}.sbatch"
    script.write_text(render_sbatch(paths.root, job_name=name, ntasks=args.ranks, partition=args.partition))
    output = log_dir / f"{name}.out"
    deadline = time.monotonic() + args.run_timeout_s
    t0 = time.time()
    proc = _run(["sbatch", "--parsable", f"--output={output}", str(script)], timeout=60)
    returned = time.time()
    if proc.returncode != 0:
        raise BenchError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip()}")
    job = st.parse_sbatch_parsable(proc.stdout)
    last_check = [0.0, False]

    def ended():  # squeue at most every 2 s while the run goes (it costs CPU on 2 cores)
        if time.monotonic() - last_check[0] >= 2.0:
            last_check[0] = time.monotonic()
            last_check[1] = in_squeue(job) is False
        return last_check[1]

    try:
        first, seen = wait_first_row(paths, deadline, args.poll_s, ended)
        wait_final_status(paths, deadline, args.poll_s, ended)
        done_seen = None
        while time.monotonic() < deadline:
            if in_squeue(job) is False:
                done_seen = time.time()
                break
            time.sleep(0.2)
        if done_seen is None:
            raise BenchError(f"job {job} still in squeue after {args.run_timeout_s:.0f} s")
    except BaseException:
        _run(["scancel", job], timeout=60)
        raise
    final = progress_now(paths)
    sacct = sacct_times(job)
    step_start = None
    try:
        m = re.search(r"weldsim-bench: step_start=([0-9.]+)", output.read_text())
        step_start = float(m.group(1)) if m else None
    except OSError:
        pass
    marks = {"returned": returned, "job_submit": sacct.get("submit"), "alloc_start": sacct.get("start"),
             "launched": step_start, "progress_created": final.get("started_unix"),
             "first_row": first.get("first_row", {}).get("wall_s"), "first_row_seen": seen,
             "final_status": final.get("status", {}).get("wall_s"), "done_seen": done_seen,
             "record_finished": None, "job_end": sacct.get("end")}
    ok = final.get("status", {}).get("state") == "completed" and sacct.get("state") == "COMPLETED"
    return {"mode": "sbatch", "run_id": paths.run_id, "t_submit": t0, "ok": ok,
            "state": final.get("status", {}).get("state"), "reason": None, "job_id": job, "sacct": sacct,
            "n_rows": final.get("n_rows"), "attempts": 1, "marks": marks, "offsets": _offsets(t0, marks)}


def warm_up(args, root: Path) -> float:
    """One untimed run through plain mpirun (page cache, JIT cache); its wall seconds."""
    from weldsim_hpc.launch import launch

    paths = prepare(args, root)
    t0 = time.monotonic()
    proc = launch(paths.root, args.ranks)
    code = proc.wait(timeout=args.run_timeout_s)
    if code != 0:
        raise BenchError(f"the warm-up run {paths.root} failed (exit {code}); see its launcher.log/solver.log")
    return time.monotonic() - t0


# --------------------------------------------------------------------------- summary and report

COLUMNS = (("returned", "submit() returns"), ("alloc_start", "→ allocation (sacct Start)"),
           ("launched", "→ step launched"), ("progress_created", "→ progress.h5 created"),
           ("first_row", "→ first progress row"), ("final_status", "→ run's final status row"),
           ("done_seen", "→ completed (seen)"), ("job_end", "→ job end (sacct End)"))


#: phases between the marks: (name, from, to); from None = the submit call
PHASES = (("to launch", None, "launched"), ("rank start-up", "launched", "progress_created"),
          ("to first row", "progress_created", "first_row"), ("first row to final status", "first_row",
                                                              "final_status"),
          ("final status to completed (seen)", "final_status", "done_seen"))


def phases(offsets: dict) -> dict:
    out = {}
    for name, a, b in PHASES:
        start = 0.0 if a is None else offsets.get(a)
        end = offsets.get(b)
        out[name] = None if start is None or end is None else end - start
    return out


def _stats(values: list) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def summarise(runs: list[dict]) -> dict:
    groups: dict[str, list[dict]] = {}
    for r in runs:
        if r["ok"]:
            groups.setdefault(r["group"], []).append(r)
    out = {}
    for group, rs in groups.items():
        out[group] = {"n": len(rs), **{k: _stats([r["offsets"][k] for r in rs]) for k, _ in COLUMNS},
                      "phases": {name: _stats([phases(r["offsets"])[name] for r in rs]) for name, _, _ in PHASES}}
    return out


def ratios(summary: dict) -> list[dict]:
    pairs = [("slurm", "local", "Slurm executor / local executor (later submits)"),
             ("slurm first", "local first", "Slurm executor / local executor (first submit)"),
             ("slurm", "sbatch", "dask-jobqueue (Slurm executor) / plain sbatch")]
    out = []
    for num, den, label in pairs:
        a, b = summary.get(num), summary.get(den)
        if not a or not b:
            continue
        row = {"ratio": label, "numerator": num, "denominator": den}
        for key in ("first_row", "done_seen", "final_status"):
            if a.get(key) and b.get(key):
                row[key] = {"median": a[key]["median"] / b[key]["median"], "min": a[key]["min"] / b[key]["min"],
                            "difference_median_s": a[key]["median"] - b[key]["median"]}
        out.append(row)
    return out


def machine() -> dict:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass

    def out(cmd, **kw):
        try:
            return _run(cmd, **kw).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    import dask
    import dask_jobqueue
    import distributed

    dirty = bool(out(["git", "status", "--porcelain", "--", "weldsim_hpc", "benchmarks/executors.py"], cwd=ROOT))
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "host": os.uname().nodename,
            "python": sys.version.split()[0], "slurm": out(["sinfo", "--version"]),
            "mpi": (out(["mpirun", "--version"]).splitlines() or ["?"])[0], "dask": dask.__version__,
            "distributed": distributed.__version__, "dask_jobqueue": dask_jobqueue.__version__,
            "git_commit": out(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT), "git_dirty": dirty}


def _f(x, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


GROUP_LABELS = {"local first": "local executor, first submit (starts the LocalCluster)",
                "slurm first": "Slurm executor, first submit",
                "local": "local executor (dask LocalCluster → mpirun)",
                "slurm": "Slurm executor (dask-jobqueue worker job → srun step)",
                "sbatch": "plain sbatch (batch shell → srun step)"}


def markdown(rep: dict) -> str:
    m, s = rep["machine"], rep["summary"]
    lines = ["# Executor benchmark: submit → first progress row → completed, local vs Slurm, dask-jobqueue vs sbatch",
             "",
             f"Date {rep['date']}; {m['cpu_model']}, nproc {m['nproc']} (shared machine); Slurm {m['slurm']} "
             f"(single node, slurm/local-cluster); dask {m['dask']}, dask-jobqueue {m['dask_jobqueue']}; commit "
             f"{m['git_commit']}" + (" + uncommitted changes" if m.get("git_dirty") else "") + ". "
             f"Load average (1 min) before / after: {rep['loadavg_before'][0]:.2f} / {rep['loadavg_after'][0]:.2f}.",
             "",
             f"Command: `{rep['command']}`", "",
             f"Case {rep['case']} at preset {rep['preset']}, {rep['ranks']} ranks, every run prepared afresh "
             "(not timed). Seconds from the submit call (agent.submit / sbatch); median (min) over the runs of "
             "each row. \"First submit\" rows are one run each; the other rows are "
             f"{rep['repeats']} repeats, the order local/slurm/sbatch rotated each round. "
             f"Imports before timing: distributed {rep['import_s']['distributed']:.2f} s, dask_jobqueue "
             f"{rep['import_s']['dask_jobqueue']:.2f} s. "
             + (f"Untimed warm-up run (mpirun): {rep['warmup_s']:.1f} s." if rep.get("warmup_s") else ""),
             "",
             "| mode | runs | " + " | ".join(label for _, label in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for group in ("local first", "slurm first", "local", "slurm", "sbatch"):
        g = s.get(group)
        if not g:
            continue
        cells = []
        for key, _ in COLUMNS:
            st = g.get(key)
            cells.append("–" if not st else (f"{st['median']:.2f}" if st["n"] == 1
                                             else f"{st['median']:.2f} ({st['min']:.2f})"))
        lines.append(f"| {GROUP_LABELS[group]} | {g['n']} | " + " | ".join(cells) + " |")
    lines += ["", "Phases (median s over the same runs): to launch = submit → mpirun/srun started; rank "
                  "start-up = → progress.h5 created (MPI init, imports, case and mesh read, until the backend "
                  "opens its progress file); then → first progress row, → the run's final status row, → "
                  "completed as seen by the submitter.", "",
              "| mode | " + " | ".join(name for name, _, _ in PHASES) + " |", "|---|" + "---|" * len(PHASES)]
    for group in ("local first", "slurm first", "local", "slurm", "sbatch"):
        g = s.get(group)
        if g:
            lines.append(f"| {GROUP_LABELS[group]} | "
                         + " | ".join(_f(g["phases"][n] and g["phases"][n]["median"]) for n, _, _ in PHASES) + " |")
    lines += ["", "| ratio | first progress row: median (min) | completed (seen): median (min) | "
                  "run's final status row: median | difference of medians, first row / completed |",
              "|---|---|---|---|---|"]
    for r in rep["ratios"]:
        fr, dn, fs = r.get("first_row"), r.get("done_seen"), r.get("final_status")
        lines.append(f"| {r['ratio']} | {_f(fr and fr['median'])} ({_f(fr and fr['min'])}) | "
                     f"{_f(dn and dn['median'])} ({_f(dn and dn['min'])}) | {_f(fs and fs['median'])} | "
                     f"{_f(fr and fr['difference_median_s'], 1)} s / {_f(dn and dn['difference_median_s'], 1)} s |")
    bad = [r for r in rep["runs"] if not r["ok"]]
    foreign = [r for r in rep["runs"] if r.get("foreign", {}).get("foreign_jobs") or r.get("foreign", {}).get("pytest")]
    lines += ["", "Columns: allocation = sacct Start of the job (Slurm modes; sacct prints whole seconds, taken "
                  "as the middle of the second, so this column and job end are ±0.5 s); step "
                  "launched = mpirun/srun started (attempts.json; for sbatch the script's timestamp before srun); "
                  "progress.h5 created = the header's started_unix (rank 0 after the imports and the mesh read); "
                  "first progress row = its own wall_s; completed (seen) = agent.wait() returns (the agent's "
                  "monitor, poll_s 1 s, wrote the final state; the Slurm executor closes its worker job first) "
                  "or the sbatch job has left squeue. Recorded, not asserted."]
    if bad:
        lines += ["", "Runs that did not complete (left out of the table): "
                  + "; ".join(f"{r['group']} {r['run_id']}: {r['state']} {r.get('reason') or ''}" for r in bad)]
    if foreign:
        lines += ["", "Runs that overlapped foreign activity on the machine (other Slurm jobs or pytest): "
                  + "; ".join(f"{r['group']} {r['run_id']}" for r in foreign)]
    if rep.get("leftovers"):
        lines += ["", f"Left-overs found and cleaned at the end: {rep['leftovers']}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main

def cleanup(agent, run_ids: set[str]) -> dict:
    """Close the agent; no job of ours in squeue, no dask worker of ours alive (else cancel/kill, report)."""
    left: dict = {}
    if agent is not None:
        try:
            agent.close()
        except Exception as exc:  # noqa: BLE001
            left["agent_close_error"] = repr(exc)

    def ours(name: str) -> bool:
        return name.startswith(SBATCH_PREFIX) or any(name.startswith(f"weldsim-{r}-") for r in run_ids)

    deadline = time.monotonic() + 60
    jobs = []
    while time.monotonic() < deadline:
        jobs = [(j, n, s) for j, n, s in (squeue_all() or []) if ours(n)]
        if not jobs:
            break
        time.sleep(1)
    if jobs:
        left["jobs"] = [f"{j} {n} {s}" for j, n, s in jobs]
        for j, _, _ in jobs:
            _run(["scancel", j], timeout=60)
    deadline = time.monotonic() + 30
    workers = []
    while time.monotonic() < deadline:
        workers = [(p, n) for p, n in dask_workers() if ours(n)]
        if not workers:
            break
        time.sleep(1)
    if workers:
        left["dask_workers"] = [f"{p} ({n})" for p, n in workers]
        for p, _ in workers:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return left


def main(argv=None) -> int:
    args = parse_args(argv)
    assert not any(m in sys.modules for m in MPI_MODULES), "this process must not import MPI modules"
    keep_default = args.work_dir is not None
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="weldsim_bench_executors_")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=work / "bench.log", level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(f"work directory: {work}", flush=True)

    wait_info: dict = {"waited_s": None, "machine_busy": None}
    if not args.no_wait:
        waited, still = wait_for_quiet(args.wait_max_s)
        print(f"cluster quiet (waited {waited:.0f} s)" + (f"; machine still busy: {still}" if still else ""),
              flush=True)
        wait_info = {"waited_s": waited, "machine_busy": still}
    proc = _run(["bash", str(START_SH)], timeout=300)
    if proc.returncode != 0:
        raise BenchError(f"start.sh failed: {proc.stdout}\n{proc.stderr}")

    import_s = {}
    for mod in ("distributed", "dask_jobqueue"):
        t = time.perf_counter()
        __import__(mod)
        import_s[mod] = time.perf_counter() - t

    agent_root, sbatch_root, warm_root = work / "agent-runs", work / "sbatch-runs", work / "warmup"
    log_dir = work / "sbatch-logs"
    for d in (agent_root, sbatch_root, warm_root, log_dir):
        d.mkdir(exist_ok=True)

    warmup_s = None
    if not args.no_warmup:
        print("untimed warm-up run (mpirun) …", flush=True)
        warmup_s = warm_up(args, warm_root)
        print(f"  {warmup_s:.1f} s", flush=True)

    # every run prepared before any timing (gmsh in this process, one at a time)
    plan = [("local first", "local"), ("slurm first", "slurm")]
    for i in range(args.repeats):
        k = i % len(MODES)
        plan += [(m, m) for m in MODES[k:] + MODES[:k]]
    print(f"preparing {len(plan)} runs …", flush=True)
    prepared = [(group, mode, prepare(args, sbatch_root if mode == "sbatch" else agent_root)) for group, mode in plan]
    run_ids = {p.run_id for _, _, p in prepared}

    from weldsim_hpc.executors.agent import Agent
    from weldsim_hpc.executors.config import load_config

    overrides = {"runs_root": agent_root, "slurm_partition": args.partition}
    config = load_config(overrides)

    def is_ours(name: str) -> bool:
        return name.startswith(SBATCH_PREFIX) or any(name.startswith(f"weldsim-{r}-") for r in run_ids)

    monitor = ActivityMonitor(is_ours).start()
    load0 = os.getloadavg()
    runs: list[dict] = []
    agent = None
    leftovers: dict = {}
    t_start = time.time()
    try:
        agent = Agent(config).start()
        for n, (group, mode, paths) in enumerate(prepared, 1):
            settled = settle(is_ours)
            node = node_states()
            load_before = os.getloadavg()[0]
            if mode == "sbatch":
                r = time_sbatch_run(paths, args, log_dir)
            else:
                r = time_agent_run(agent, paths, mode, args)
            r["phases"] = phases(r["offsets"])
            r.update(group=group, loadavg_before=load_before, loadavg_after=os.getloadavg()[0], settle_s=settled,
                     node_state_at_submit=node)
            end = r["marks"].get("done_seen") or time.time()
            r["foreign"] = monitor.during(r["t_submit"], end)
            runs.append(r)
            o = r["offsets"]
            flag = "" if r["ok"] else f"  NOT COMPLETED: {r['state']} {r.get('reason') or ''}"
            busy = " (foreign activity)" if r["foreign"]["foreign_jobs"] or r["foreign"]["pytest"] else ""
            print(f"  [{n}/{len(prepared)}] {group:12s} {paths.run_id}: submit returned {_f(o['returned'])} s, "
                  f"first row {_f(o['first_row'])} s, completed {_f(o['done_seen'])} s{flag}{busy}", flush=True)
    finally:
        monitor.stop()
        leftovers = cleanup(agent, run_ids)
    load1 = os.getloadavg()

    summary = summarise(runs)
    report = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
              "command": shlex.join([".venv/bin/python", "benchmarks/executors.py",
                                     *(argv if argv is not None else sys.argv[1:])]),
              "case": str(Path(args.case).resolve().relative_to(ROOT)) if Path(args.case).resolve().is_relative_to(ROOT)
              else args.case, "preset": args.preset, "ranks": args.ranks, "repeats": args.repeats,
              "config": json.loads(config.model_dump_json()), "import_s": import_s, "warmup_s": warmup_s,
              "wait": wait_info,
              "loadavg_before": load0, "loadavg_after": load1, "elapsed_s": time.time() - t_start,
              "summary": summary, "ratios": ratios(summary), "runs": runs,
              "activity_samples": monitor.samples, "leftovers": leftovers}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    text = markdown(report)
    out.with_suffix(".md").write_text(text)
    print(text)
    all_ok = all(r["ok"] for r in runs)
    if all_ok and not args.keep and not keep_default and not leftovers:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"run directories and logs kept in {work}", flush=True)
    return 0 if all_ok and not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
