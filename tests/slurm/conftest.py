"""A real single-node Slurm for the tests: `slurm_cluster` runs slurm/local-cluster/start.sh.

Every job the tests submit goes through `SlurmCluster.sbatch` (or carries its `prefix` in
the job name): at the end of the session no job of ours may be left in squeue — leftovers
are cancelled and the session fails. The cluster itself stays up (others use it too).

This process never imports mpi4py or dolfinx: it only runs Slurm's commands. Jobs are
submitted with a small explicit environment (`SlurmCluster.env`), never pytest's own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START_SH = REPO / "slurm" / "local-cluster" / "start.sh"
START_TIMEOUT_S = 180  # start.sh's own bound is 60 s per wait; the machine may be slow
#: job states after which a job no longer changes (sacct State column, first word)
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE", "REVOKED"}
SACCT_FORMAT = "JobID,JobName,State,ExitCode,Start,End,Elapsed,NodeList"


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run a command (argv list) with a bound; capture text output."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def run_start_sh(timeout: float = START_TIMEOUT_S) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = run(["bash", str(START_SH)], timeout=timeout, stdin=subprocess.DEVNULL)
    return proc, time.monotonic() - t0


@dataclass
class SacctRow:
    job_id: str
    name: str
    state: str  # the first word: "CANCELLED by 0" -> "CANCELLED"
    exit_code: str
    start: str
    end: str
    elapsed: str
    nodes: str

    @property
    def is_step(self) -> bool:
        return "." in self.job_id


@dataclass
class SlurmCluster:
    """What the tests need of the running cluster, and a way to submit and wait."""

    node: str
    partition: str
    cluster_name: str
    prefix: str  # every job name of this session starts with it
    submitted: list[str] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """A small explicit environment for sbatch/srun (sbatch passes it to the job)."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "USER", "LOGNAME", "TMPDIR")}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "WELDSIM_PYTHON": sys.executable})
        env.update(extra)
        return env

    def sbatch(self, name: str, args: list[str], *, env: dict[str, str] | None = None,
               cwd: Path = REPO) -> str:
        """`sbatch --parsable --job-name=<prefix><name> ARGS`; returns the job id."""
        cmd = ["sbatch", "--parsable", f"--job-name={self.prefix}{name}", *args]
        proc = run(cmd, timeout=60, env=env or self.env(), cwd=cwd, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}): {proc.stderr}"
        job_id = proc.stdout.strip().split(";")[0]
        assert job_id.isdigit(), f"sbatch --parsable printed {proc.stdout!r}"
        self.submitted.append(job_id)
        return job_id

    def in_squeue(self, job_id: str) -> list[str]:
        """squeue lines (id|state) of the job (array: every task); [] when gone."""
        proc = run(["squeue", "--noheader", "--format=%i|%T", f"--jobs={job_id}"], timeout=60)
        if proc.returncode != 0:  # "Invalid job id specified" once slurmctld has purged it
            return []
        return [line for line in proc.stdout.splitlines() if line.strip()]

    def sacct(self, job_id: str, *, duplicates: bool = False) -> list[SacctRow]:
        cmd = ["sacct", "--parsable2", "--noheader", f"--format={SACCT_FORMAT}", f"--jobs={job_id}"]
        proc = run(cmd + (["--duplicates"] if duplicates else []), timeout=60)
        assert proc.returncode == 0, f"sacct failed: {proc.stderr}"
        rows = []
        for line in proc.stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 8:
                parts[2] = parts[2].split()[0] if parts[2].strip() else parts[2]
                rows.append(SacctRow(*parts))
        return rows

    def wait(self, job_id: str, timeout: float, count: int = 1) -> list[SacctRow]:
        """Wait until the job (every array task) has left squeue AND sacct shows a final
        state for each of at least `count` job rows (an array: its task count — sacct may
        list a task that just ended a moment after the others); return sacct's job rows
        (no steps). On timeout: cancel, fail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.in_squeue(job_id):
                rows = [r for r in self.sacct(job_id) if not r.is_step]
                if len(rows) >= count and all(r.state in FINAL_STATES for r in rows):
                    return rows
            time.sleep(2)
        run(["scancel", job_id], timeout=60)
        pytest.fail(f"job {job_id} did not finish within {timeout:.0f} s (cancelled); "
                    f"squeue: {self.in_squeue(job_id)}; sacct: {self.sacct(job_id)}")

    def our_jobs_in_squeue(self) -> list[str]:
        proc = run(["squeue", "--noheader", "--format=%i|%j|%T"], timeout=60)
        assert proc.returncode == 0, f"squeue failed: {proc.stderr}"
        ours = []
        for line in proc.stdout.splitlines():
            job_id, _, rest = line.partition("|")
            name = rest.rsplit("|", 1)[0]
            if name.startswith(self.prefix) or job_id.split("_")[0] in self.submitted:
                ours.append(line)
        return ours


@pytest.fixture(scope="session")
def slurm_cluster():
    proc, seconds = run_start_sh()
    assert proc.returncode == 0, f"start.sh failed after {seconds:.0f} s:\n{proc.stdout}\n{proc.stderr}"
    node = socket.gethostname().split(".")[0]
    sinfo = run(["sinfo", "--noheader", "--format=%P"], timeout=60)
    default = [p for p in sinfo.stdout.split() if p.endswith("*")]
    assert default, f"no default partition: {sinfo.stdout!r} {sinfo.stderr!r}"
    config = run(["scontrol", "show", "config"], timeout=60).stdout
    cluster_name = next(line.split("=", 1)[1].strip() for line in config.splitlines()
                        if line.startswith("ClusterName"))
    cluster = SlurmCluster(node=node, partition=default[0].rstrip("*"), cluster_name=cluster_name,
                           prefix=f"wst-{uuid.uuid4().hex[:6]}-")
    yield cluster
    left = cluster.our_jobs_in_squeue()
    if left:
        for line in left:
            run(["scancel", line.split("|")[0]], timeout=60)
        deadline = time.monotonic() + 60
        while cluster.our_jobs_in_squeue() and time.monotonic() < deadline:
            time.sleep(1)
        pytest.fail(f"jobs of this test session were left in squeue (cancelled now): {left}")
