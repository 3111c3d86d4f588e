"""SlurmExecutor — runs through dask-jobqueue's SLURMCluster on a Slurm cluster.

dask-jobqueue builds clusters from single-node pilot jobs and does not launch MPI, so:

* a run with more than one rank gets a cluster of its own whose one worker job IS the
  run's allocation (`--ntasks`, `--nodes`, walltime, partition … via
  job_extra_directives, conflicting defaults dropped with job_directives_skip); its dask
  task starts ``srun --mpi=pmix -n N python -m weldsim_hpc.run RUN_DIR`` inside it (or
  ``srun … apptainer exec IMAGE python3 …``). The cluster is closed as soon as the task
  ends, so the allocation ends with the run (no idle allocations);
* single-rank runs (sweeps) share one adaptive cluster of at most
  `slurm_sweep_max_jobs` one-thread worker jobs.

Every job requests ``--signal=USR1@<lead>``: the run checkpoints before its walltime and
ends `interrupted` (exit 4), which is never resubmitted automatically. Worker jobs are
``--no-requeue``: the agent, not Slurm, decides about a second attempt.

States: live from squeue, final from sacct; a job missing from squeue is not finished
until sacct says so (sacct may lag: "unknown, retry"). A run is `lost` only when the
scheduler no longer knows its job, no final status is recorded and its last progress row
is older than twice the heartbeat — never while Slurm says RUNNING. NODE_FAIL (or a job
that vanished that way) is resubmitted once and resumes from its checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..launch import exit_code, launch
from ..run_paths import RunPaths, read_attempts, record_attempt_end
from ..states import RunState
from . import slurm_text as st
from .base import (EXIT_LOST, EXIT_OF_STATUS, Attempt, Executor, Outcome, outcome_of_exit,
                   outcome_of_recorded_end, tail_logs, task_key)
from .config import ExecutorConfig
from .local import last_status
from .record import RunRecord, try_lock

SLURM_LOGS = "slurm-logs"
#: job states that say the node (not the run) failed: lost, resubmitted once
NODE_LOSS_STATES = frozenset({"NODE_FAIL", "BOOT_FAIL", "PREEMPTED"})


def run_attempt_in_allocation(run_dir: str, ntasks: int, resume: bool, python: str, mpi: str,
                              image: str | None, binds: tuple[str, ...]) -> int:
    """The dask task inside a worker job: the entry point as a job step of this allocation.

    Always a step (``srun -n N``, even for one rank): Slurm's walltime USR1 reaches job
    steps, not the batch shell the dask worker lives in. The step's environment is the
    clean launch environment plus the job's SLURM_* variables (slurm_text.srun_environment);
    attempts.json gets this job's id next to the srun pid.
    """
    paths = RunPaths.from_dir(run_dir)
    if image:
        from .container import python_in_image

        python = python_in_image()
    argv = st.run_argv(paths.root, python=python, resume=resume)
    cmd = st.srun_command(ntasks, argv, mpi=mpi, image=image,
                          binds=(os.fspath(paths.runs_root), *binds) if image else ())
    fd = try_lock(paths)
    try:
        proc = launch(paths.root, ntasks, resume=resume, env=st.srun_environment(os.environ), pass_fds=(fd,),
                      scheduler_job_id=os.environ.get("SLURM_JOB_ID"), command=cmd)
    finally:
        os.close(fd)
    code = exit_code(proc.wait())
    attempt = next(a for a in reversed(read_attempts(paths)) if a.get("pid") == proc.pid)
    record_attempt_end(paths, attempt["attempt"], code)
    return code


_import_guard = threading.Lock()


def slurm_cluster_class():
    """dask_jobqueue.SLURMCluster, imported without its import-time SIGINT handler.

    dask-jobqueue 0.9's runner module runs ``signal.signal(SIGINT, lambda *_: sys.exit())``
    when imported: off the main thread (the agent's request threads, the portal's) that
    raises ValueError, and on it Ctrl-C would become sys.exit in the agent or portal. The
    handler is left as it was.
    """
    import signal
    import sys

    with _import_guard:
        if "dask_jobqueue" not in sys.modules:
            real = signal.signal

            def keep_sigint(signum, handler):
                if signum == signal.SIGINT:
                    return signal.getsignal(signum)
                return real(signum, handler)

            signal.signal = keep_sigint
            try:
                import dask_jobqueue  # noqa: F401
            finally:
                signal.signal = real
    from dask_jobqueue import SLURMCluster

    return SLURMCluster


class SlurmCommands:
    """squeue / sacct / scancel with timeouts; argv and parsing from slurm_text (pure)."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s)
        except (subprocess.TimeoutExpired, OSError):
            return None  # unclear: the caller retries later, never concludes anything

    def squeue(self, job_ids: list[str]) -> dict[str, st.SqueueRow] | None:
        """Live rows (--states=all: also jobs that ended moments ago); None when unclear."""
        out = self._run(st.squeue_command(job_ids, all_states=True))
        if out is None:
            return None
        if out.returncode != 0:
            return {} if st.is_unknown_job_error(out.stderr) else None
        return st.parse_squeue(out.stdout)

    def sacct(self, job_ids: list[str]) -> dict[str, st.SacctRecord] | None:
        out = self._run(st.sacct_command(job_ids))
        return None if out is None or out.returncode != 0 else st.parse_sacct(out.stdout)

    def job_ids_named(self, name: str) -> list[str]:
        out = self._run(["squeue", "--noheader", "--format=%i", f"--name={st.validate_job_name(name)}"])
        if out is None or out.returncode != 0:
            return []
        return [line.strip() for line in out.stdout.splitlines() if line.strip()]

    def scancel(self, job_id: str, signal: str | None = None) -> bool:
        out = self._run(st.scancel_command([job_id], signal=signal))
        return out is not None and out.returncode == 0


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, config: ExecutorConfig):
        super().__init__(config)
        self.cmd = SlurmCommands(config.slurm_command_timeout_s)
        self._guard = threading.Lock()
        self._sweep = None  # (cluster, client) shared by single-rank runs

    # --- clusters ----------------------------------------------------------------------
    def _resources(self, record: RunRecord) -> st.SlurmResources:
        r = record.resources
        walltime = r.walltime or self.config.slurm_walltime
        return st.SlurmResources(ntasks=r.ntasks, nodes=r.nodes or (1 if r.ntasks == 1 else None),
                                 mem=r.mem or self.config.slurm_mem, walltime_s=st.parse_walltime(walltime),
                                 partition=r.partition or self.config.slurm_partition,
                                 account=r.account or self.config.slurm_account, qos=self.config.slurm_qos,
                                 signal_lead_s=self.config.slurm_signal_lead_s)

    def _cluster(self, res: st.SlurmResources, name: str, paths: RunPaths, *, adaptive: bool):
        import dask
        from distributed import Client

        SLURMCluster = slurm_cluster_class()

        dask.config.set({"distributed.scheduler.allowed-failures": 0})
        logs = self.config.runs_root / ".agent" / SLURM_LOGS
        logs.mkdir(parents=True, exist_ok=True)
        python = self.config.python or sys.executable
        cluster = SLURMCluster(**st.slurm_cluster_kwargs(res, name=name, python=python,
                                                         log_directory=os.fspath(logs)))
        if adaptive:
            cluster.adapt(minimum_jobs=0, maximum_jobs=self.config.slurm_sweep_max_jobs)
        else:
            cluster.scale(jobs=1)
        return cluster, Client(cluster)

    def _sweep_client(self, res: st.SlurmResources, paths: RunPaths):
        with self._guard:
            if self._sweep is None:
                self._sweep = self._cluster(res, "weldsim-sweep", paths, adaptive=True)
            return self._sweep[1]

    # --- Executor ------------------------------------------------------------------------
    def start(self, paths: RunPaths, record: RunRecord, attempt: int, *, resume: bool) -> Attempt:
        res = self._resources(record)
        python = self.config.python or sys.executable
        args = (os.fspath(paths.root), res.ntasks, resume, python, self.config.slurm_mpi,
                record.resources.image or self.config.slurm_image, tuple(self.config.slurm_binds))
        key = task_key(record.run_id, attempt)
        if res.ntasks == 1 and record.resources.nodes in (None, 1) and record.resources.walltime is None:
            client, own = self._sweep_client(res, paths), None
        else:
            own = self._cluster(res, f"weldsim-{record.run_id}-a{attempt}", paths, adaptive=False)
            client = own[1]
        future = client.submit(run_attempt_in_allocation, *args, key=key, pure=False)
        return Attempt(record.run_id, attempt, future, data={"cluster": own, "started": time.time()})

    def _attempt_entry(self, paths: RunPaths, number: int) -> dict | None:
        return next((a for a in read_attempts(paths) if a["attempt"] == number), None)

    def _job_id(self, paths: RunPaths, attempt: Attempt) -> str | None:
        entry = self._attempt_entry(paths, attempt.number)
        job = entry.get("scheduler_job_id") if entry else None
        if job is None and attempt.data.get("cluster"):
            cluster = attempt.data["cluster"][0]
            jobs = [w.job_id for w in cluster.workers.values() if getattr(w, "job_id", None)]
            job = jobs[0] if jobs else None
        return job

    def is_running(self, paths: RunPaths, attempt: Attempt) -> bool:
        return self._attempt_entry(paths, attempt.number) is not None

    def _release(self, attempt: Attempt) -> None:
        own = attempt.data.pop("cluster", None)
        if own is not None:
            cluster, client = own
            client.close()
            cluster.close()  # scancels the worker job: the allocation ends with the run

    def _slurm_state(self, job: str | None, *, final: bool) -> str | None:
        """The job's Slurm state (e.g. "NODE_FAIL"); with final=True only once sacct has
        its final record (None: not known yet — unknown, retry)."""
        if job is None:
            return None
        records = self.cmd.sacct([job])
        if not records or job not in records:
            return None
        if final:
            live = self.cmd.squeue([job])
            if live is None or st.final_state_or_none(records, job, live=live) is None:
                return None
        return records[job].state

    def _ended(self, paths: RunPaths, record: RunRecord, attempt: Attempt, code: int | None,
               job: str | None) -> Outcome | None:
        """How an attempt ended: `code` is the task's exit code (None: the task failed or its
        job vanished). Returns None while that cannot be told yet (sacct lag).

        The scheduler's verdict on the node comes first: a job that ended NODE_FAIL
        (or BOOT_FAIL, PREEMPTED) is lost and resubmitted once whatever its ranks managed on
        the way down — Slurm signals the steps of a failed node, so a run may even have
        checkpointed and exited 4. Then the run's own last status (it knows whether it
        completed); then the exit code; then the job's final state.
        """
        if record.cancel_requested:
            return Outcome(RunState.CANCELLED, "cancelled on request")
        status = last_status(paths, attempt.number)
        state = self._slurm_state(job, final=code is None)
        if status is not RunState.COMPLETED and state in NODE_LOSS_STATES:
            self._record_end(paths, attempt.number, EXIT_LOST)
            return Outcome(RunState.LOST, f"job {job} ended {state}", resubmit=True)
        if attempt.adopted and status is RunState.INTERRUPTED and state != "TIMEOUT":
            # the old agent died, its worker with it, and the step checkpointed on the way
            # down: not the user's or the walltime's doing — resume it once
            self._record_end(paths, attempt.number, EXIT_OF_STATUS[status])
            return Outcome(RunState.LOST, f"job {job} ended with the agent that ran it (checkpoint written)",
                           resubmit=True)
        if status is not None:
            code = EXIT_OF_STATUS[status]
        elif code == 0:  # srun exits 0 when its step is killed by Slurm; only the run knows it completed
            self._record_end(paths, attempt.number, EXIT_LOST)
            return Outcome(RunState.FAILED, f"the run's step in job {job} ended without the run recording an "
                                            "outcome; see solver.log and the Slurm logs")
        if code is not None:
            self._record_end(paths, attempt.number, code)
            return outcome_of_exit(code)
        if job is None:
            return Outcome(RunState.LOST, "the worker job ended before the run started", resubmit=True)
        if state is None:
            return None  # sacct lags behind squeue, or the job may still run: unknown, retry
        self._record_end(paths, attempt.number, EXIT_LOST)
        if state == "TIMEOUT":
            return Outcome(RunState.FAILED, f"time limit: job {job} reached its walltime before a checkpoint")
        if attempt.adopted:  # its worker lost the old agent's scheduler and ended, the run with it
            return Outcome(RunState.LOST, f"job {job} ended {state} while no agent watched it", resubmit=True)
        return Outcome(RunState.FAILED, f"job {job} ended {state}")

    def _record_end(self, paths: RunPaths, number: int, code: int) -> None:
        entry = self._attempt_entry(paths, number)
        if entry is not None and entry.get("exit_code") is None:
            record_attempt_end(paths, number, code)

    def poll(self, paths: RunPaths, record: RunRecord, attempt: Attempt) -> Outcome | None:
        future = attempt.future
        if future is not None and future.done():
            if future.status == "finished":
                code = future.result()  # before the release: it closes the client
                outcome = self._ended(paths, record, attempt, code, self._job_id(paths, attempt))
                self._release(attempt)
                return outcome
            if future.status == "cancelled" and record.cancel_requested:
                if self._job_alive(self._job_id(paths, attempt)):
                    return None
                self._release(attempt)
                return Outcome(RunState.CANCELLED, "cancelled on request")
            outcome = self._ended(paths, record, attempt, None, self._job_id(paths, attempt))
            if outcome is not None:
                self._release(attempt)
            return outcome
        job = self._job_id(paths, attempt)
        if job is None:
            return None  # still queued in dask / the worker job not submitted yet
        entry = self._attempt_entry(paths, attempt.number)
        if attempt.adopted and entry is not None and entry.get("exit_code") is not None:
            # the task recorded the exit before its worker lost the old agent's scheduler
            if self._job_alive(job):
                self.cmd.scancel(job)  # a worker without a scheduler serves nobody
            return self._ended(paths, record, attempt, entry["exit_code"], job)
        live = self.cmd.squeue([job])
        if live is None or job in live and not st.run_state_of(live[job].state).is_terminal:
            return None  # squeue unclear or the job waits / runs: never lost while RUNNING
        if future is not None and not attempt.adopted:
            if not self._heartbeat_stale(paths, attempt):
                return None
        outcome = self._ended(paths, record, attempt, None, job)
        if outcome is not None:
            if future is not None:
                future.cancel()  # before the release: it closes the client
            self._release(attempt)
        return outcome

    def _heartbeat_stale(self, paths: RunPaths, attempt: Attempt) -> bool:
        from ..progress_reader import is_stale

        if not paths.progress_h5.exists():
            return time.time() - attempt.data.get("started", 0) > self.config.lost_after_s
        try:
            return is_stale(paths.progress_h5, time.time(), self.config.lost_after_s) or \
                last_status(paths, attempt.number) is not None
        except (OSError, KeyError, ValueError):
            return False

    def _job_alive(self, job: str | None) -> bool:
        if job is None:
            return False
        live = self.cmd.squeue([job])
        return bool(live) and job in live and not st.run_state_of(live[job].state).is_terminal

    def cancel(self, paths: RunPaths, attempt: Attempt) -> None:
        if attempt.future is not None:
            attempt.future.cancel()  # first: a released task is never started (again)
        job = self._job_id(paths, attempt)
        if job is not None:
            self.cmd.scancel(job)  # Slurm: SIGTERM to every step, SIGKILL after KillWait
            deadline = time.monotonic() + self.config.cancel_grace_s
            while time.monotonic() < deadline and self._job_alive(job):
                time.sleep(0.5)
            if self._job_alive(job):
                self.cmd.scancel(job, "KILL")
        self._release(attempt)

    def adopt(self, paths: RunPaths, record: RunRecord) -> Attempt | Outcome | None:
        attempts = read_attempts(paths)
        # worker jobs of attempts that never started lost their scheduler with the old agent
        number = max((a["attempt"] for a in attempts), default=0)
        for job in self.cmd.job_ids_named(f"weldsim-{record.run_id}-a{number + 1}"):
            self.cmd.scancel(job)
        if not attempts:
            return None
        last = attempts[-1]
        if last.get("exit_code") is not None:
            return outcome_of_recorded_end(last, record)
        return Attempt(record.run_id, last["attempt"], adopted=True)

    def logs(self, paths: RunPaths, lines: int = 200) -> str:
        job = next((a.get("scheduler_job_id") for a in reversed(read_attempts(paths))
                    if a.get("scheduler_job_id")), None)
        extra: tuple = ()
        if job:
            logs = self.config.runs_root / ".agent" / SLURM_LOGS
            extra = tuple(sorted(Path(logs).glob(f"*-{job}.err")) + sorted(Path(logs).glob(f"*-{job}.out")))
        return tail_logs(paths, lines, extra)

    def close(self) -> None:
        with self._guard:
            if self._sweep is not None:
                cluster, client = self._sweep
                client.close()
                cluster.close()
                self._sweep = None
