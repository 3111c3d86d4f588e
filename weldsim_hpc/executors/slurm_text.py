"""What the Slurm executor sends to Slurm, and how it reads the answers — pure text, no calls.

Everything here is a function of its arguments: the ``#SBATCH`` directives and keyword
arguments of dask-jobqueue's ``SLURMCluster``, the ``srun`` argv of a run's job step, the
``squeue``/``sacct``/``scancel`` argvs, the parsers of their output, and the one table from
Slurm job states to `RunState`. The executor runs the commands; the tests check the text
against output recorded from a real Slurm 22.05 (tests/executors/data/).

    res = SlurmResources(ntasks=4, walltime_s=parse_walltime("1:00:00"), partition="debug")
    cluster = SLURMCluster(**slurm_cluster_kwargs(res, name="weldsim-k3v9x0q2m7ab",
                                                  python="/opt/weldsim/.venv/bin/python"))
    # in the dask task, inside the allocation:
    argv = srun_command(4, run_argv(run_dir, python="/opt/weldsim/.venv/bin/python"))
    # ['srun', '--mpi=pmix', '--export=ALL', '-n', '4', '/opt/…/python', '-m', 'weldsim_hpc.run', RUN_DIR]
    rows = parse_squeue(squeue_stdout)                 # live state
    records = parse_sacct(sacct_stdout)                # final state
    final_state_or_none(records, "123")                # None: not (yet) final, ask again later

Nothing a user types reaches a script or a shell unquoted: ``#SBATCH`` values are
validated (a newline would inject a directive), job names are restricted, commands are
argv lists, and what dask-jobqueue joins into its worker command line is shell-quoted.

Facts checked on the single-node Slurm 22.05 here (slurm/local-cluster):

- ``--signal=USR1@<lead>`` (no ``B:``) reaches the job steps (the ``srun`` ranks) only;
  neither the batch shell nor the dask worker it runs sees it (USR1's default action
  would kill the worker). ``B:`` would do the opposite. Slurm may send it up to a minute
  early.
- ``--export=PATH,HOME,…`` keeps the submitting process's other variables (OMPI_*,
  PMIX_*, anything the agent inherited) out of the job; Slurm still sets SLURM_* and, as
  with ``--export=NONE``, loads the user's login environment on the node
  (``SLURM_GET_USER_ENV=1``). Names that are not set are skipped silently.
- sbatch's ``--export`` list reaches a job step through ``SLURM_EXPORT_ENV``: a bare
  ``srun`` in the job exports only those names (``--export=NONE``: only SLURM_*, not even
  PATH). Hence ``srun --export=ALL`` with an environment the executor builds
  (`srun_environment`).
- A bare ``srun`` and ``--mpi=pmi2`` abort in MPI_Init with OpenMPI 4.1; ``--mpi=pmix``
  works. In 22.05 srun no longer inherits ``--cpus-per-task`` from the allocation.
- ``squeue --jobs=<one id>`` for a job slurmctld has forgotten (MinJobAge after its end)
  exits 1 with "Invalid job id specified"; with several ids it prints nothing for them.
  A job that ended within MinJobAge is left out unless ``--states=all`` is given.
- ``sacct`` 22.05 accepts the ``Reason`` field (the last reason the job waited, kept after
  it ran: a requeued job that completed still says BeginTime); with ``--jobs`` its time
  window starts at the epoch. ``--duplicates`` lists a requeued job's records oldest
  first: the stopped one as REQUEUED (its steps CANCELLED 0:15), then the new one, which
  waited about two minutes (BeginTime) before it ran again. A batch step ends CANCELLED
  0:15 when the job hits its time limit, while the job record says TIMEOUT; the job record
  of a dask worker closed by its cluster is "CANCELLED by 0" while its srun step COMPLETED.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from ..errors import WeldSimError
from ..launch import ALLOWED_VARIABLES, ENTRY, FORCED_VARIABLES, clean_environment
from ..states import RunState
from .container import apptainer_prefix


class SlurmInputError(WeldSimError, ValueError):
    """A value meant for an ``#SBATCH`` line or a Slurm command is not acceptable."""


class SlurmOutputError(WeldSimError, ValueError):
    """Slurm printed something the parsers do not understand (the text is in the message)."""


# --------------------------------------------------------------------------- validation

#: characters an #SBATCH value may hold: enough for partitions, accounts, paths, 4G, 1-00:00:00
SBATCH_VALUE_RE = re.compile(r"^[A-Za-z0-9._:/=@+-]+$")
SBATCH_VALUE_CHARS = "letters, digits and . _ : / = @ + -"
JOB_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
JOB_ID_RE = re.compile(r"^[0-9]+(?:_[0-9]+)?$")
_MEM_RE = re.compile(r"^([0-9]+)([KMGT]?)$")


def _first_bad(value: str, allowed: re.Pattern[str]) -> str | None:
    return next((c for c in value if not allowed.match(c)), None)


def validate_sbatch_value(option: str, value: object) -> str:
    """`value` as text if it may follow ``--option=`` on an ``#SBATCH`` line, else SlurmInputError.

    Allowed: ``^[A-Za-z0-9._:/=@+-]+$``. Quoting is not enough — sbatch reads the script
    line by line, so a newline in a partition name would add a directive of its own.
    Integers are accepted and turned into text; booleans and everything else are not.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise SlurmInputError(f"{option}: expected text, got {type(value).__name__} {value!r}")
    if not value:
        raise SlurmInputError(f"{option}: the value is empty; leave the option out instead")
    if not SBATCH_VALUE_RE.match(value):
        bad = _first_bad(value, re.compile(r"[A-Za-z0-9._:/=@+-]"))
        raise SlurmInputError(f"{option}: {value!r} contains the character {bad!r}, which may not appear in "
                              f"an #SBATCH value (allowed: {SBATCH_VALUE_CHARS})")
    return value


def validate_job_name(name: object) -> str:
    """`name` if it is a Slurm job name we write: 1–64 of ``A-Z a-z 0-9 _ -``, else SlurmInputError."""
    if not isinstance(name, str):
        raise SlurmInputError(f"job name: expected text, got {type(name).__name__} {name!r}")
    if not JOB_NAME_RE.match(name):
        bad = _first_bad(name, re.compile(r"[A-Za-z0-9_-]"))
        why = (f"contains the character {bad!r}" if bad is not None
               else "is empty" if not name else f"is {len(name)} characters long (at most 64)")
        raise SlurmInputError(f"job name {name!r} {why}; use 1-64 letters, digits, '_' or '-'")
    return name


def validate_job_id(job_id: object) -> str:
    """A job id we pass to squeue/sacct/scancel: ``123`` or an array task ``123_4``."""
    text = str(job_id) if isinstance(job_id, int) and not isinstance(job_id, bool) else job_id
    if not isinstance(text, str) or not JOB_ID_RE.match(text):
        raise SlurmInputError(f"job id {job_id!r} is not a Slurm job id such as '123' or '123_4'")
    return text


def parse_walltime(text: str) -> int:
    """Seconds in a Slurm time: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``.

    As in Slurm, a lone number is minutes (``"90"`` → 5400) and two numbers are minutes
    and seconds (``"0:05"`` → 5, the form squeue prints). Also reads squeue's and sacct's
    elapsed times. ``UNLIMITED`` and other words are refused (SlurmInputError).
    """
    if not isinstance(text, str):
        raise SlurmInputError(f"walltime: expected text such as '01:30:00', got {type(text).__name__} {text!r}")
    m = re.fullmatch(r"(?:([0-9]+)-)?([0-9]+(?::[0-9]+){0,2})", text.strip())
    if m is None:
        raise SlurmInputError(f"walltime {text!r} is not a Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM "
                              "or D-HH:MM:SS)")
    parts = [int(p) for p in m.group(2).split(":")]
    if m.group(1) is None:
        h, mi, s = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
        limits = {2: [(s, 60)], 3: [(mi, 60), (s, 60)]}.get(len(parts), [])
        days = 0
    else:
        days = int(m.group(1))
        h, mi, s = (parts + [0, 0])[:3]
        limits = [(h, 24), (mi, 60), (s, 60)]
    if any(v >= top for v, top in limits):
        raise SlurmInputError(f"walltime {text!r}: hours must be below 24 after a day count, minutes and seconds "
                              "below 60 after a larger unit")
    return ((days * 24 + h) * 60 + mi) * 60 + s


def format_walltime(seconds: int) -> str:
    """``HH:MM:SS`` (or ``D-HH:MM:SS`` from one day on) for a whole number of seconds ≥ 0."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise SlurmInputError(f"walltime: expected a whole number of seconds >= 0, got {seconds!r}")
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    mi, s = divmod(rest, 60)
    return f"{days}-{h:02d}:{mi:02d}:{s:02d}" if days else f"{h:02d}:{mi:02d}:{s:02d}"


def _positive_int(what: str, value: object, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f">= {low}"
        raise SlurmInputError(f"{what}: expected a whole number {span}, got {value!r}")
    return value


# --------------------------------------------------------------------------- resources

#: options our directives set, and options that would break the job model; `extra` may not hold them
MANAGED_OPTIONS = frozenset({
    "ntasks", "nodes", "cpus-per-task", "mem", "time", "partition", "account", "qos", "signal", "requeue",
    "no-requeue", "export", "job-name", "output", "error",  # ours, or dask-jobqueue's -J/-o/-e
    "export-file", "get-user-env", "uid", "gid", "array", "wrap",  # change who/what runs
})
_EXTRA_RE = re.compile(r"--([a-z][a-z0-9-]*)(?:=(.*))?", re.DOTALL)


def _check_extra(item: object) -> str:
    if not isinstance(item, str):
        raise SlurmInputError(f"extra directive {item!r}: expected text such as '--constraint=avx2'")
    m = _EXTRA_RE.fullmatch(item)
    if m is None:
        raise SlurmInputError(f"extra directive {item!r}: write it as '--option' or '--option=value' "
                              "(long option names only)")
    if m.group(1) in MANAGED_OPTIONS:
        raise SlurmInputError(f"extra directive {item!r}: --{m.group(1)} is set by WeldSim itself (or not "
                              f"allowed); use the SlurmResources field instead. Managed: "
                              f"{', '.join(sorted(MANAGED_OPTIONS))}")
    if m.group(2) is not None:
        validate_sbatch_value(f"--{m.group(1)}", m.group(2))
    return item


@dataclass(frozen=True)
class SlurmResources:
    """The allocation of one run's job: tasks (= MPI ranks), nodes, memory, walltime, where.

    ntasks        MPI ranks (``--ntasks``), >= 1
    nodes         ``--nodes`` (None: Slurm decides), 1 <= nodes <= ntasks
    cpus_per_task ``--cpus-per-task`` (OpenMP/BLAS threads stay 1 per rank regardless)
    mem           memory per node, Slurm syntax ``<n>[K|M|G|T]`` (binary units; no suffix: M);
                  None: the partition's default
    walltime_s    seconds (``--time``; Slurm rounds up to whole minutes); None: the partition's
    partition, account, qos   ``--partition`` / ``--account`` / ``--qos``, validated
    signal_lead_s USR1 reaches the ranks this many seconds before the walltime (0–65535;
                  None: no signal); the run checkpoints and exits 4
    requeue       False writes ``--no-requeue``: Slurm must not restart a job on its own
                  (the agent decides about resubmission); True writes ``--requeue``
    extra         further directives, each ``--option`` or ``--option=value`` (validated;
                  not one of MANAGED_OPTIONS)
    """

    ntasks: int
    nodes: int | None = None
    cpus_per_task: int = 1
    mem: str | None = None
    walltime_s: int | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    signal_lead_s: int | None = 60
    requeue: bool = False
    extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _positive_int("ntasks", self.ntasks)
        if self.nodes is not None:
            _positive_int("nodes", self.nodes)
            if self.nodes > self.ntasks:
                raise SlurmInputError(f"nodes: {self.nodes} nodes for {self.ntasks} tasks would leave nodes "
                                      "without a rank; use at most ntasks nodes")
        _positive_int("cpus_per_task", self.cpus_per_task)
        if self.mem is not None:
            text = validate_sbatch_value("mem", self.mem)
            if _MEM_RE.match(text.upper()) is None:
                raise SlurmInputError(f"mem: {self.mem!r} is not a Slurm memory size such as '4G' or '512M' "
                                      "(a whole number with K, M, G or T)")
            object.__setattr__(self, "mem", text.upper())
        if self.walltime_s is not None:
            _positive_int("walltime_s", self.walltime_s)
        for opt in ("partition", "account", "qos"):
            if getattr(self, opt) is not None:
                validate_sbatch_value(opt, getattr(self, opt))
        if self.signal_lead_s is not None:
            _positive_int("signal_lead_s", self.signal_lead_s, 0, 65535)
            if self.walltime_s is not None and self.signal_lead_s >= self.walltime_s:
                raise SlurmInputError(f"signal_lead_s: USR1 {self.signal_lead_s} s before a walltime of "
                                      f"{self.walltime_s} s would arrive at the start; use a longer walltime "
                                      "or a shorter lead")
        if not isinstance(self.requeue, bool):
            raise SlurmInputError(f"requeue: expected True or False, got {self.requeue!r}")
        if isinstance(self.extra, str):
            raise SlurmInputError(f"extra: expected a list of directives, not the single text {self.extra!r}")
        object.__setattr__(self, "extra", tuple(_check_extra(e) for e in self.extra))


# --------------------------------------------------------------------------- sbatch directives

#: variables the job takes from the submitting process by name (launch.py's allow-list);
#: the thread counts are set by value
EXPORTED_VARIABLES: tuple[str, ...] = (*ALLOWED_VARIABLES, "LC_ALL")
#: the dask worker only waits on srun: its memory limit is dask's bookkeeping, not the job's --mem
WORKER_MEMORY = "1GiB"


def export_directive() -> str:
    """``--export=PATH,HOME,…,OMP_NUM_THREADS=1,OPENBLAS_NUM_THREADS=1`` (see the module notes)."""
    items = [*EXPORTED_VARIABLES, *(f"{k}={v}" for k, v in FORCED_VARIABLES.items())]
    for item in items:  # our own constants, but a comma or newline here would be as bad as anywhere
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9._:/@+-]*)?", item):
            raise SlurmInputError(f"--export: {item!r} is not a variable name or NAME=value")
    return "--export=" + ",".join(items)


def job_extra_directives(res: SlurmResources) -> list[str]:
    """The directives of a run's job, each written by dask-jobqueue as ``#SBATCH <item>``.

    In this order: --ntasks, --nodes, --cpus-per-task, --mem, --time, --partition,
    --account, --qos, --signal=USR1@<lead> (no ``B:``: the ranks get it, not the worker),
    --no-requeue (or --requeue), --export=<allow-list>, then `res.extra`. Options left
    unset (None) are left out, so the partition's defaults apply.
    """
    out = [f"--ntasks={res.ntasks}"]
    if res.nodes is not None:
        out.append(f"--nodes={res.nodes}")
    out.append(f"--cpus-per-task={res.cpus_per_task}")
    if res.mem is not None:
        out.append(f"--mem={res.mem}")
    if res.walltime_s is not None:
        out.append(f"--time={format_walltime(res.walltime_s)}")
    for opt in ("partition", "account", "qos"):
        if getattr(res, opt) is not None:
            out.append(f"--{opt}={validate_sbatch_value(opt, getattr(res, opt))}")
    if res.signal_lead_s is not None:
        out.append(f"--signal=USR1@{res.signal_lead_s}")
    out.append("--requeue" if res.requeue else "--no-requeue")
    out.append(export_directive())
    out.extend(res.extra)
    return out


def job_directives_skip(res: SlurmResources) -> list[str]:
    """The lines of dask-jobqueue 0.9's SLURMJob header that `job_extra_directives` replaces.

    SLURMJob always writes ``-n 1``, ``--cpus-per-task=<cores>``, ``--mem=<memory>`` and
    ``-t <walltime>`` (30 min by dask's default config), and ``-p``/``-A`` when dask's
    config names a queue or account. They all give way to ours (or, where a field is None,
    to the partition's defaults — never to dask's config behind our back). dask-jobqueue
    drops every header line *containing* a skip string, so each one starts with
    ``#SBATCH `` and matches its line only; ``-J``, ``-e`` and ``-o`` stay (our job name and
    log directory). Our own directives are never filtered. `res` is taken for symmetry
    with `job_extra_directives`: every shape of run replaces the same lines.
    """
    del res
    return ["#SBATCH -n 1", "#SBATCH --cpus-per-task=", "#SBATCH --mem=", "#SBATCH -t ", "#SBATCH -p ",
            "#SBATCH -A "]


def slurm_cluster_kwargs(res: SlurmResources, *, name: str, python: str, log_directory: str | None = None,
                         worker_extra_args: Sequence[str] = (), scheduler_host: str = "127.0.0.1",
                         local_directory: str | None = None, death_timeout_s: int = 60) -> dict:
    """Keyword arguments for ``dask_jobqueue.SLURMCluster(**kwargs)``: one worker job = one run's allocation.

    The worker has one thread (``cores=1, processes=1`` → ``--nthreads 1``: one task, i.e.
    one attempt, at a time) and no nanny (``--no-nanny``): if the worker dies, the job ends
    with it instead of a restarted worker taking another task into the same allocation.
    The worker is started with ``exec`` so that it IS the batch step's process and dies
    with the job. `name` becomes the Slurm job name (``-J``), `log_directory` (absolute) gets the
    ``<name>-<jobid>.out/.err`` files. `python` and `worker_extra_args` are shell-quoted,
    because dask-jobqueue joins them into the worker's command line. The scheduler binds
    to `scheduler_host` (127.0.0.1 serves a single-node cluster; on a real cluster give the
    login node's address) with the dashboard off, on a free port.
    """
    if not isinstance(python, str) or not python:
        raise SlurmInputError(f"python: expected the path of an interpreter, got {python!r}")
    if isinstance(worker_extra_args, str):
        raise SlurmInputError(f"worker_extra_args: expected a list of arguments, not the text {worker_extra_args!r}")
    if log_directory is not None:
        log_directory = validate_sbatch_value("log_directory", os.fspath(log_directory))
        if not log_directory.startswith("/"):
            raise SlurmInputError(f"log_directory {log_directory!r} must be absolute: sbatch would resolve it "
                                  "against the job's working directory")
    validate_sbatch_value("scheduler_host", scheduler_host)
    kwargs = {
        "cores": 1,
        "processes": 1,
        "memory": WORKER_MEMORY,
        "nanny": False,
        "job_name": validate_job_name(name),
        # exec: the worker replaces the job script's shell. Otherwise Slurm's linuxproc
        # tracking kills the shell on cancel and the worker, reparented to init, lives on
        # (seen here: every cancelled worker job left its dask worker behind).
        "python": "exec " + shlex.quote(python),
        "job_extra_directives": job_extra_directives(res),
        "job_directives_skip": job_directives_skip(res),
        "job_script_prologue": [],  # explicit, so nothing from dask's config runs before the worker
        "worker_extra_args": [shlex.quote(str(a)) for a in worker_extra_args],
        "death_timeout": _positive_int("death_timeout_s", death_timeout_s),
        "scheduler_options": {"host": scheduler_host, "dashboard": False, "dashboard_address": ":0"},
    }
    if log_directory is not None:
        kwargs["log_directory"] = log_directory
    if local_directory is not None:
        kwargs["local_directory"] = shlex.quote(os.fspath(local_directory))
    return kwargs


# --------------------------------------------------------------------------- the job step

#: srun --mpi plugins we accept; only pmix works with OpenMPI 4.1 here (DESIGN.md)
MPI_PLUGINS = ("pmix", "pmix_v3", "pmix_v4", "pmi2", "cray_shasta", "none")


def run_argv(run_dir: str | os.PathLike, *, python: str, resume: bool = False) -> list[str]:
    """``[python, "-m", "weldsim_hpc.run", RUN_DIR(, "--resume")]``; RUN_DIR made absolute.

    In the Apptainer image, `python` is ``container.python_in_image()`` (``python3``).
    """
    if not isinstance(python, str) or not python:
        raise SlurmInputError(f"python: expected the path of an interpreter, got {python!r}")
    return [python, *ENTRY, os.path.abspath(os.fspath(run_dir))] + (["--resume"] if resume else [])


def srun_command(ntasks: int, argv: Sequence[str], *, mpi: str = "pmix", image: str | os.PathLike | None = None,
                 binds: Sequence[str | os.PathLike] = (), cpus_per_task: int | None = None) -> list[str]:
    """The argv of a run's job step: ``srun --mpi=pmix --export=ALL -n N [apptainer exec …] ARGV``.

    ``--export=ALL`` makes the step take exactly the environment srun is started with
    (build it with `srun_environment`), not the sbatch ``--export`` list it would
    otherwise inherit. `cpus_per_task` is repeated on the step because srun 22.05 no longer
    inherits it. With `image`, each rank runs ``apptainer exec --bind B:B,… IMAGE ARGV``
    (container.apptainer_prefix; the image must exist). The result is an argv list: hand
    it to subprocess without a shell.
    """
    _positive_int("ntasks", ntasks)
    if mpi not in MPI_PLUGINS:
        raise SlurmInputError(f"srun --mpi={mpi!r} is not one of {', '.join(MPI_PLUGINS)} "
                              "(pmix is the one that works with OpenMPI 4.1)")
    if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
        raise SlurmInputError(f"argv: expected a non-empty list of arguments, got {argv!r}")
    cmd = ["srun", f"--mpi={mpi}", "--export=ALL", "-n", str(ntasks)]
    if cpus_per_task is not None:
        cmd.append(f"--cpus-per-task={_positive_int('cpus_per_task', cpus_per_task)}")
    if image is not None:
        cmd += apptainer_prefix(image, binds)
    elif binds:
        raise SlurmInputError("binds are for the Apptainer image; give image= as well, or leave binds out")
    return cmd + list(argv)


def srun_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The environment to start `srun_command` with, inside the allocation (e.g. from os.environ).

    launch.clean_environment's allow-list (one OpenMP/BLAS thread, no OMPI_*/PMIX_*/PMI_*)
    plus the job's SLURM_* variables, without which srun would ask for a new allocation
    instead of starting a step. Refuses (SlurmInputError) outside an allocation.
    """
    if not base.get("SLURM_JOB_ID"):
        raise SlurmInputError("SLURM_JOB_ID is not set: srun_command runs inside the run's allocation (the "
                              "dask worker job); outside one srun would queue a job of its own")
    env = clean_environment(base, as_root=False)
    env.update({k: v for k, v in base.items() if k.startswith("SLURM_")})
    return env


# --------------------------------------------------------------------------- commands

#: squeue columns: job id (123, 123_4, 123_[5-7]), state (%T, long form), reason, elapsed, nodes, name last
SQUEUE_FORMAT = "%i|%T|%r|%M|%N|%j"
#: sacct columns; Reason is accepted by sacct 22.05 (checked)
SACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "Start", "End", "Elapsed", "NodeList", "Reason")
#: sacct's options before ``--jobs=…``: every requeue (--duplicates) and every step, in parse_sacct's format
SACCT_ARGS = ("--parsable2", "--noheader", "--duplicates", f"--format={','.join(SACCT_FIELDS)}")


def _job_list(job_ids: Iterable[object]) -> str:
    if isinstance(job_ids, (str, int)):
        job_ids = [job_ids]
    ids = [validate_job_id(j) for j in job_ids]
    if not ids:
        raise SlurmInputError("no job ids given: name the jobs to ask about")
    return ",".join(dict.fromkeys(ids))


def squeue_command(job_ids: Iterable[str], *, all_states: bool = False) -> list[str]:
    """``squeue --noheader --format=SQUEUE_FORMAT [--states=all] --jobs=…``.

    Without ``--states=all`` squeue shows pending, running and completing jobs only; with
    it, also a job that ended less than MinJobAge ago (e.g. FAILED, reason
    NonZeroExitCode). One id that slurmctld forgot: exit 1, see `is_unknown_job_error`.
    """
    return ["squeue", "--noheader", f"--format={SQUEUE_FORMAT}", *(["--states=all"] if all_states else []),
            f"--jobs={_job_list(job_ids)}"]


def sacct_command(job_ids: Iterable[str]) -> list[str]:
    """``sacct --parsable2 --noheader --duplicates --format=SACCT_FIELDS --jobs=…`` (every requeue, every step)."""
    return ["sacct", *SACCT_ARGS, f"--jobs={_job_list(job_ids)}"]


def scancel_command(job_ids: Iterable[str], *, signal: str | None = None, full: bool = False) -> list[str]:
    """``scancel [--signal=SIG] [--full] IDS``: a signal reaches the job steps (``--full``: the batch shell too)."""
    cmd = ["scancel"]
    if signal is not None:
        if signal not in ("USR1", "USR2", "TERM", "INT", "KILL", "CONT", "STOP"):
            raise SlurmInputError(f"scancel --signal={signal!r}: use one of USR1, USR2, TERM, INT, KILL, CONT, STOP")
        cmd.append(f"--signal={signal}")
    if full:
        cmd.append("--full")
    return cmd + _job_list(job_ids).split(",")


def is_unknown_job_error(stderr: str) -> bool:
    """True for squeue's/scancel's "Invalid job id specified": slurmctld no longer holds the job.

    Not an end state: ask sacct.
    """
    return "Invalid job id specified" in stderr


# --------------------------------------------------------------------------- states

Q, R = RunState.QUEUED, RunState.RUNNING

#: Every job state Slurm 22.05 prints (job_state_string, src/common/slurm_protocol_defs.c).
#: This maps scheduler facts only; the run's own outcome is the executor's to decide:
#: - "finished" is not "succeeded": COMPLETED says the job's batch script exited 0. For a
#:   dask worker job that is the worker, so the run's outcome is its task's exit code
#:   (or the ``srun`` step's record in `SacctRecord.steps`).
#: - States where Slurm ended the job from outside (SCHEDULER_ENDED: TIMEOUT, NODE_FAIL,
#:   PREEMPTED, DEADLINE, BOOT_FAIL) map to FAILED here; the executor refines them to
#:   INTERRUPTED when the run directory holds a checkpoint (USR1 arrives before the
#:   walltime), which this table cannot know.
#: - A job Slurm still holds is never terminal: REQUEUED, REQUEUE_HOLD, REQUEUE_FED,
#:   RESV_DEL_HOLD and SPECIAL_EXIT (requeued and held after a special exit code) are
#:   QUEUED, so nobody resubmits a job that may still run. CONFIGURING (nodes booting) has
#:   not started the script either.
#: - Allocated but not progressing still counts as RUNNING: SUSPENDED, STOPPED, RESIZING,
#:   SIGNALING, COMPLETING (processes still ending), STAGE_OUT (burst buffer).
#: - REVOKED (federations only: a sibling cluster started the job) is LOST to this cluster.
SLURM_TO_RUN_STATE: dict[str, RunState] = {
    "PENDING": Q, "CONFIGURING": Q, "REQUEUED": Q, "REQUEUE_HOLD": Q, "REQUEUE_FED": Q,
    "RESV_DEL_HOLD": Q, "SPECIAL_EXIT": Q,
    "RUNNING": R, "COMPLETING": R, "RESIZING": R, "SUSPENDED": R, "STOPPED": R, "SIGNALING": R,
    "STAGE_OUT": R,
    "COMPLETED": RunState.COMPLETED,
    "CANCELLED": RunState.CANCELLED,
    "FAILED": RunState.FAILED, "OUT_OF_MEMORY": RunState.FAILED, "TIMEOUT": RunState.FAILED,
    "NODE_FAIL": RunState.FAILED, "PREEMPTED": RunState.FAILED, "DEADLINE": RunState.FAILED,
    "BOOT_FAIL": RunState.FAILED,
    "REVOKED": RunState.LOST,
}
del Q, R

#: Slurm ended (or never started) the job for reasons outside the run; see SLURM_TO_RUN_STATE
SCHEDULER_ENDED = frozenset({"TIMEOUT", "NODE_FAIL", "PREEMPTED", "DEADLINE", "BOOT_FAIL"})


def normalise_state(text: str) -> str:
    """``"CANCELLED by 0"`` → ``"CANCELLED"``; also drops a truncation ``+`` and upper-cases."""
    words = text.strip().split()
    return words[0].rstrip("+").upper() if words else ""


def run_state_of(slurm_state: str) -> RunState:
    """The RunState of a Slurm job state (long form, e.g. from squeue %T or sacct State).

    Raises SlurmOutputError for a state not in SLURM_TO_RUN_STATE: guessing would turn an
    unknown state into "finished".
    """
    key = normalise_state(slurm_state)
    try:
        return SLURM_TO_RUN_STATE[key]
    except KeyError:
        raise SlurmOutputError(f"unknown Slurm job state {slurm_state!r} (known: "
                               f"{', '.join(sorted(SLURM_TO_RUN_STATE))})") from None


# --------------------------------------------------------------------------- parsers

def _excerpt(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def parse_sbatch_parsable(stdout: str) -> str:
    """The job id from ``sbatch --parsable``: ``"123"`` or ``"123;cluster"`` → ``"123"``.

    Anything else raises SlurmOutputError: the submission's outcome is then unclear, and
    the caller must not resubmit before squeue has shown whether the job exists.
    """
    text = stdout.strip()
    m = re.fullmatch(r"([0-9]+)(?:;[A-Za-z0-9._-]+)?", text)
    if m is None:
        raise SlurmOutputError(f"sbatch --parsable printed {_excerpt(stdout)}, not '<jobid>' or "
                               "'<jobid>;<cluster>'; whether the job was queued is unclear, so check squeue "
                               "before submitting again")
    return m.group(1)


def _lines(stdout: str) -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(stdout.splitlines(), 1) if line.strip()]


def _duration_or_none(text: str, where: str) -> int | None:
    if text.strip() in ("", "INVALID", "UNLIMITED", "NOT_SET", "Unknown"):
        return None
    try:
        return parse_walltime(text)
    except SlurmInputError:
        raise SlurmOutputError(f"{where}: {text!r} is not a Slurm duration") from None


def _text_or_none(text: str) -> str | None:
    return None if text in ("", "None", "(null)") else text


@dataclass(frozen=True)
class SqueueRow:
    """One line of squeue (SQUEUE_FORMAT): a job slurmctld still holds.

    job_id: ``123``, an array task ``123_4``, or pending array tasks ``123_[5-7]``;
    state: long form (PENDING, RUNNING, COMPLETING …); reason: why it waits (None when
    squeue says "None"); elapsed_s: seconds it has run (None if squeue cannot tell);
    nodes: Slurm host list (empty while pending); name: the job name.
    """

    job_id: str
    state: str
    reason: str | None
    elapsed_s: int | None
    nodes: str
    name: str

    @property
    def run_state(self) -> RunState:
        return run_state_of(self.state)

    @property
    def array_job_id(self) -> str:
        """``123`` for ``123``, ``123_4`` and ``123_[5-7]``."""
        return self.job_id.split("_", 1)[0]


def parse_squeue(stdout: str) -> dict[str, SqueueRow]:
    """squeue output in SQUEUE_FORMAT (``--noheader``; a header line is skipped) → job id → row.

    The job name is the last column, so a ``|`` inside a name stays in the name.
    """
    rows: dict[str, SqueueRow] = {}
    for n, line in _lines(stdout):
        parts = line.split("|", 5)
        if len(parts) != 6:
            raise SlurmOutputError(f"squeue line {n}: {_excerpt(line)} has {len(parts)} of 6 '|'-separated "
                                   f"columns; was it run with --format={SQUEUE_FORMAT}?")
        job_id, state, reason, elapsed, nodes = (p.strip() for p in parts[:5])
        name = parts[5]
        if job_id == "JOBID":
            continue
        if not re.fullmatch(r"[0-9]+(?:_(?:[0-9]+|\[[0-9,%\-]+\]))?(?:\+[0-9]+)?", job_id):
            raise SlurmOutputError(f"squeue line {n}: {job_id!r} is not a job id")
        rows[job_id] = SqueueRow(job_id, normalise_state(state), _text_or_none(reason),
                                 _duration_or_none(elapsed, f"squeue line {n}"), nodes, name)
    return rows


def parse_exit_code(text: str) -> tuple[int, int]:
    """sacct's ExitCode ``"3:0"`` → (3, 0): the exit code and the signal that ended it."""
    m = re.fullmatch(r"([0-9]+):([0-9]+)", text.strip())
    if m is None:
        raise SlurmOutputError(f"{text!r} is not a sacct ExitCode such as '0:0' or '3:0'")
    return int(m.group(1)), int(m.group(2))


def _time_or_none(text: str, where: str) -> datetime | None:
    if text in ("", "Unknown", "None"):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise SlurmOutputError(f"{where}: {text!r} is not a time (expected 2024-05-01T12:00:00)") from None


@dataclass(frozen=True)
class SacctRecord:
    """One sacct record: a job (step None) or one of its steps ("batch", "extern", "0" …).

    state is normalised (``"CANCELLED by 0"`` → ``"CANCELLED"``, raw_state keeps the
    text); exit_code and signal come from ExitCode ``"<code>:<signal>"`` (None when sacct
    leaves it empty, as for the steps of a job that ended NODE_FAIL); start/end are the
    local times sacct prints (None while unknown or never started); elapsed_s in seconds;
    nodes is empty before an allocation (sacct: "None assigned"); reason is the last reason
    the job waited (None: "None"). A job record
    carries its steps (in sacct's order) and, for a requeued job, the earlier records
    (`previous`, oldest first); the record itself is the latest one.
    """

    job_id: str
    step: str | None
    name: str
    state: str
    raw_state: str
    exit_code: int | None
    signal: int | None
    start: datetime | None
    end: datetime | None
    elapsed_s: int | None
    nodes: str
    reason: str | None
    steps: tuple[SacctRecord, ...] = ()
    previous: tuple[SacctRecord, ...] = field(default=(), repr=False)

    @property
    def run_state(self) -> RunState:
        return run_state_of(self.state)

    def step_record(self, step: str) -> SacctRecord | None:
        """The step named `step` ("batch", "0" …) of this record, or None."""
        return next((s for s in self.steps if s.step == step), None)


def parse_sacct(stdout: str) -> dict[str, SacctRecord]:
    """``sacct --parsable2 --noheader --duplicates --format=SACCT_FIELDS`` output → job id → latest record.

    Step lines (``123.batch``, ``123.extern``, ``123.0``) are attached to the job record
    they follow. With ``--duplicates`` a requeued job has one job record per start, in
    sacct's order (oldest first, checked on a requeued job here); the last one is kept and
    the earlier ones go into `previous`. Array tasks keep their ids (``123_4``); a job id
    in the output that no asked-for job matches is kept as well.
    """
    order: list[str] = []
    history: dict[str, list[SacctRecord]] = {}
    steps: dict[tuple[str, int], list[SacctRecord]] = {}
    width = len(SACCT_FIELDS)
    for n, line in _lines(stdout):
        parts = line.split("|")
        if len(parts) > width:  # a '|' in a job name (the only free-text field before Reason)
            extra = len(parts) - width
            parts = [parts[0], "|".join(parts[1:2 + extra]), *parts[2 + extra:]]
        if len(parts) != width:
            raise SlurmOutputError(f"sacct line {n}: {_excerpt(line)} has {len(parts)} of {width} '|'-separated "
                                   f"fields; was it run with --parsable2 --format={','.join(SACCT_FIELDS)}?")
        job_field, name, raw_state, exit_text, start, end, elapsed, nodes, reason = parts
        if job_field == "JobID":
            continue
        job_id, _, step = job_field.partition(".")
        code, sig = (None, None) if exit_text == "" else parse_exit_code(exit_text)  # "": steps lost to NODE_FAIL
        where = f"sacct line {n}"
        record = SacctRecord(job_id, step or None, name, normalise_state(raw_state), raw_state, code, sig,
                             _time_or_none(start, where), _time_or_none(end, where),
                             _duration_or_none(elapsed, where), "" if nodes == "None assigned" else nodes,
                             _text_or_none(reason))
        if not step:
            if job_id not in history:
                order.append(job_id)
                history[job_id] = []
            history[job_id].append(record)
            steps[(job_id, len(history[job_id]) - 1)] = []
        elif job_id in history:
            steps[(job_id, len(history[job_id]) - 1)].append(record)
        else:
            raise SlurmOutputError(f"sacct line {n}: step {job_field!r} comes before any record of job {job_id}")
    out: dict[str, SacctRecord] = {}
    for job_id in order:
        with_steps = [replace(r, steps=tuple(steps[(job_id, i)])) for i, r in enumerate(history[job_id])]
        out[job_id] = replace(with_steps[-1], previous=tuple(with_steps[:-1]))
    return out


def final_state_or_none(records: Mapping[str, SacctRecord], job_id: str, *,
                        live: Mapping[str, SqueueRow] | None = None) -> RunState | None:
    """The job's final RunState from parsed sacct output, or None if it cannot be told yet.

    None ("unknown, retry" — never "finished") when the job is missing (a job that just
    ended may not be in the database yet), when its latest record is not terminal (still
    PENDING/RUNNING, or requeued), or when `live` (parse_squeue of ``squeue --states=all``)
    shows the job queued or running: a requeueable job's record reads NODE_FAIL for a few
    seconds before sacct lists its new PENDING record (recorded here), while squeue already
    shows it PENDING. Jobs submitted with ``--no-requeue`` (the default of SlurmResources)
    do not come back. The exit codes are in ``records[job_id]`` and its steps.
    """
    record = records.get(validate_job_id(job_id))
    if record is None:
        return None
    row = None if live is None else live.get(job_id)
    if row is not None and not run_state_of(row.state).is_terminal:
        return None
    state = record.run_state
    return state if state.is_terminal else None
