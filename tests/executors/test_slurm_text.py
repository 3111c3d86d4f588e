"""weldsim_hpc.executors.slurm_text: what the Slurm executor sends, and its parsers of Slurm's answers.

The parsers are tested against output recorded from the real single-node Slurm 22.05
(tests/executors/data/, slurm/local-cluster), plus small inline strings for edge cases.
The job-script test renders dask-jobqueue's real SLURMCluster.job_script() (a scheduler
starts on 127.0.0.1 and is closed; no job is submitted).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from datetime import datetime
from pathlib import Path

import pytest

from weldsim_hpc.errors import WeldSimError
from weldsim_hpc.executors import slurm_text as st
from weldsim_hpc.executors.slurm_text import (
    SCHEDULER_ENDED, SLURM_TO_RUN_STATE, SQUEUE_FORMAT, SlurmInputError, SlurmOutputError,
    SlurmResources, final_state_or_none, format_walltime, job_directives_skip, job_extra_directives,
    parse_exit_code, parse_sacct, parse_sbatch_parsable, parse_squeue, parse_walltime, run_argv, run_state_of,
    sacct_command, scancel_command, slurm_cluster_kwargs, squeue_command, srun_command, srun_environment,
    validate_job_id, validate_job_name, validate_sbatch_value,
)
from weldsim_hpc.states import RunState

DATA = Path(__file__).parent / "data"
PY = "/opt/weldsim/.venv/bin/python"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("value", ["debug", "4G", "1-00:00:00", "gpu:a100:2", "proj_x.y", "a@b+c=d/e"])
def test_sbatch_values_of_the_allowed_alphabet_pass(value):
    assert validate_sbatch_value("partition", value) == value


def test_integers_become_text_and_booleans_do_not():
    assert validate_sbatch_value("nodes", 4) == "4"
    with pytest.raises(SlurmInputError, match="nodes: expected text"):
        validate_sbatch_value("nodes", True)


@pytest.mark.parametrize("value, char", [
    ("debug\n#SBATCH --uid=0", "'\\n'"), ("a b", "' '"), ("a,b", "','"), ("$(id)", "'$'"),
    ("x;rm", "';'"), ("q'x", '"\'"'), ("tab\there", "'\\t'"),
])
def test_sbatch_values_name_the_option_and_the_offending_character(value, char):
    with pytest.raises(SlurmInputError) as info:
        validate_sbatch_value("partition", value)
    assert str(info.value).startswith("partition: ")
    assert f"the character {char}" in str(info.value)


def test_empty_and_non_text_values_are_refused():
    with pytest.raises(SlurmInputError, match="empty"):
        validate_sbatch_value("account", "")
    with pytest.raises(SlurmInputError, match="account: expected text, got NoneType"):
        validate_sbatch_value("account", None)


def test_errors_are_domain_errors_and_value_errors():
    assert issubclass(SlurmInputError, WeldSimError) and issubclass(SlurmInputError, ValueError)
    assert issubclass(SlurmOutputError, WeldSimError) and issubclass(SlurmOutputError, ValueError)


@pytest.mark.parametrize("name", ["weldsim-k3v9x0q2m7ab", "a", "A_b-9", "x" * 64])
def test_job_names_pass(name):
    assert validate_job_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("", "is empty"), ("x" * 65, "65 characters long"), ("a.b", "'.'"), ("run\n#SBATCH -A x", "'\\n'"),
    ("a b", "' '"), (7, "expected text"),
])
def test_bad_job_names_say_why(name, why):
    with pytest.raises(SlurmInputError, match=re.escape(why)):
        validate_job_name(name)


def test_job_ids():
    assert validate_job_id("123") == "123"
    assert validate_job_id(123) == "123"
    assert validate_job_id("123_4") == "123_4"
    for bad in ("", "12a", "1;scancel -u root", "123_[5-7]", "-1", True):
        with pytest.raises(SlurmInputError, match="not a Slurm job id"):
            validate_job_id(bad)


# --------------------------------------------------------------------------- walltime

@pytest.mark.parametrize("text, seconds", [
    ("90", 5400), ("0:05", 5), ("30:00", 1800), ("1:02:03", 3723), ("25:00:00", 90000),
    ("1-0", 86400), ("2-03", 2 * 86400 + 3 * 3600), ("1-02:03", 93780), ("1-02:03:04", 93784),
    ("00:01:06", 66), (" 10 ", 600),
])
def test_parse_walltime_reads_every_slurm_form(text, seconds):
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "UNLIMITED", "1:2:3:4", "1:60", "1:60:00", "1-24", "1-0:60",
                                  "-5", "1.5", "1-"])
def test_parse_walltime_refuses_what_slurm_would_not_mean(text):
    with pytest.raises(SlurmInputError, match="walltime"):
        parse_walltime(text)


def test_parse_walltime_wants_text():
    with pytest.raises(SlurmInputError, match="expected text"):
        parse_walltime(3600)


@pytest.mark.parametrize("seconds, text", [(0, "00:00:00"), (59, "00:00:59"), (3661, "01:01:01"),
                                           (86399, "23:59:59"), (86400, "1-00:00:00"), (93784, "1-02:03:04")])
def test_format_walltime(seconds, text):
    assert format_walltime(seconds) == text
    assert parse_walltime(text) == seconds


def test_format_walltime_refuses_negative_and_fractional():
    for bad in (-1, 1.5, True, "60"):
        with pytest.raises(SlurmInputError):
            format_walltime(bad)


# --------------------------------------------------------------------------- resources and directives

def test_resources_defaults_and_normalisation():
    res = SlurmResources(ntasks=4, mem="4g", extra=["--constraint=avx2", "--exclusive"])
    assert (res.nodes, res.cpus_per_task, res.walltime_s, res.signal_lead_s, res.requeue) == (None, 1, None, 60, False)
    assert res.mem == "4G"
    assert res.extra == ("--constraint=avx2", "--exclusive")
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.ntasks = 8  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, message", [
    ({"ntasks": 0}, "ntasks: expected a whole number >= 1"),
    ({"ntasks": True}, "ntasks"),
    ({"ntasks": 2, "nodes": 3}, "nodes: 3 nodes for 2 tasks"),
    ({"ntasks": 2, "cpus_per_task": 0}, "cpus_per_task"),
    ({"ntasks": 1, "mem": "4GB"}, "mem: '4GB' is not a Slurm memory size"),
    ({"ntasks": 1, "mem": "4 G"}, "the character ' '"),
    ({"ntasks": 1, "walltime_s": 0}, "walltime_s"),
    ({"ntasks": 1, "partition": "debug\n#SBATCH --uid=0"}, "partition: 'debug\\n#SBATCH --uid=0' contains the "
                                                           "character '\\n'"),
    ({"ntasks": 1, "account": "a b"}, "account:"),
    ({"ntasks": 1, "qos": ""}, "qos: the value is empty"),
    ({"ntasks": 1, "walltime_s": 60, "signal_lead_s": 60}, "would arrive at the start"),
    ({"ntasks": 1, "signal_lead_s": 70000}, "between 0 and 65535"),
    ({"ntasks": 1, "requeue": "yes"}, "requeue: expected True or False"),
    ({"ntasks": 1, "extra": "--exclusive"}, "not the single text"),
    ({"ntasks": 1, "extra": ["--ntasks=3"]}, "--ntasks is set by WeldSim itself"),
    ({"ntasks": 1, "extra": ["--export=ALL"]}, "--export is set by WeldSim itself"),
    ({"ntasks": 1, "extra": ["--uid=0"]}, "--uid is set by WeldSim itself (or not allowed)"),
    ({"ntasks": 1, "extra": ["-N 2"]}, "long option names only"),
    ({"ntasks": 1, "extra": ["--constraint=a\n#SBATCH --uid=0"]}, "--constraint: "),
    ({"ntasks": 1, "extra": [3]}, "expected text"),
])
def test_resources_refuse_bad_fields_naming_them(kwargs, message):
    with pytest.raises(SlurmInputError, match=re.escape(message)):
        SlurmResources(**kwargs)


def test_job_extra_directives_full():
    res = SlurmResources(ntasks=8, nodes=2, cpus_per_task=2, mem="16G", walltime_s=2 * 3600 + 30,
                         partition="debug", account="weld", qos="normal", signal_lead_s=120,
                         extra=("--constraint=avx2",))
    assert job_extra_directives(res) == [
        "--ntasks=8", "--nodes=2", "--cpus-per-task=2", "--mem=16G", "--time=02:00:30", "--partition=debug",
        "--account=weld", "--qos=normal", "--signal=USR1@120", "--no-requeue", st.export_directive(),
        "--constraint=avx2"]


def test_job_extra_directives_leave_unset_fields_to_the_partition():
    out = job_extra_directives(SlurmResources(ntasks=1, signal_lead_s=None, requeue=True))
    assert out == ["--ntasks=1", "--cpus-per-task=1", "--requeue", st.export_directive()]


def test_export_directive_is_an_allow_list_with_one_thread():
    directive = st.export_directive()
    assert directive.startswith("--export=") and "ALL" not in directive.split("=", 1)[1].split(",")
    items = directive.split("=", 1)[1].split(",")
    assert {"PATH", "HOME", "LANG", "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1"} <= set(items)
    assert not [i for i in items if i.startswith(("OMPI_", "PMIX_", "PMI_", "SLURM_", "PYTHONPATH"))]


# --------------------------------------------------------------------------- the real SLURMCluster's job script

_SHORT = {"-n": "ntasks", "-N": "nodes", "-c": "cpus-per-task", "-t": "time", "-p": "partition",
          "-A": "account", "-J": "job-name", "-e": "error", "-o": "output", "-q": "qos"}


def _directives(script: str) -> list[tuple[str, str]]:
    """(long option name, value) of every #SBATCH line."""
    out = []
    for line in script.splitlines():
        if not line.startswith("#SBATCH"):
            continue
        body = line[len("#SBATCH"):].strip()
        if body.startswith("--"):
            opt, _, value = body[2:].partition("=")
        else:
            flag, _, value = body.partition(" ")
            opt = _SHORT[flag]
        out.append((opt, value))
    return out


def _job_script(kwargs: dict) -> str:
    from dask_jobqueue import SLURMCluster

    with SLURMCluster(**kwargs) as cluster:  # starts a scheduler on 127.0.0.1; closed on exit, no job submitted
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert not cluster.workers
        return cluster.job_script()


def test_slurm_cluster_job_script_has_our_directives_once(tmp_path):
    res = SlurmResources(ntasks=4, nodes=1, mem="2G", walltime_s=3600, partition="debug", signal_lead_s=90)
    kwargs = slurm_cluster_kwargs(res, name="weldsim-k3v9x0q2m7ab", python="/opt/my venv/bin/python",
                                  log_directory=str(tmp_path / "logs"),
                                  worker_extra_args=["--resources", "run=1; rm -rf /"])
    script = _job_script(kwargs)
    directives = _directives(script)
    names = [opt for opt, _ in directives]
    assert len(names) == len(set(names)), f"duplicate directives in:\n{script}"
    got = dict(directives)
    assert got["ntasks"] == "4" and got["nodes"] == "1" and got["cpus-per-task"] == "1"
    assert got["mem"] == "2G" and got["time"] == "01:00:00" and got["partition"] == "debug"
    assert got["signal"] == "USR1@90"  # on the steps, not "B:" (the batch shell, i.e. the worker)
    assert "no-requeue" in got and "requeue" not in got
    assert "--export=" + got["export"] == st.export_directive()
    assert got["job-name"] == "weldsim-k3v9x0q2m7ab"
    assert got["output"] == f"{tmp_path}/logs/weldsim-k3v9x0q2m7ab-%J.out"
    assert "#SBATCH -n 1" not in script and "#SBATCH -t " not in script
    worker = next(line for line in script.splitlines() if "distributed.cli.dask_worker" in line)
    argv = shlex.split(worker)
    # exec'd (the worker must BE the batch step: a shell in between lets it outlive a
    # cancelled job), and the interpreter quoted, one word
    assert argv[:2] == ["exec", "/opt/my venv/bin/python"]
    assert argv.count("--nthreads") == 1 and argv[argv.index("--nthreads") + 1] == "1"
    assert argv.count("--no-nanny") == 1 and "--nanny" not in argv
    assert argv[argv.index("--resources") + 1] == "run=1; rm -rf /"  # one argument, never shell code
    assert "--nworkers" not in argv


def test_dask_config_cannot_add_a_second_partition_account_or_walltime(tmp_path):
    import dask

    res = SlurmResources(ntasks=2, partition="debug")
    kwargs = slurm_cluster_kwargs(res, name="w", python=PY)
    with dask.config.set({"jobqueue.slurm.queue": "other", "jobqueue.slurm.account": "someone",
                          "jobqueue.slurm.walltime": "99:00:00", "jobqueue.slurm.job-mem": "100G"}):
        script = _job_script(kwargs)
    got = _directives(script)
    assert [v for o, v in got if o == "partition"] == ["debug"]
    assert not [o for o, _ in got if o in ("account", "time", "mem")]  # the partition's defaults apply
    assert [v for o, v in got if o == "ntasks"] == ["2"]


def test_every_default_line_of_slurmjob_is_skipped_by_a_directive_prefix():
    from dask_jobqueue.slurm import SLURMJob

    job = SLURMJob(scheduler="tcp://127.0.0.1:1", name="x", cores=1, memory="1GiB", queue="q", account="a",
                   walltime="00:10:00", job_name="n", python=PY, job_directives_skip=[])
    defaults = [line for line in job.job_header.splitlines() if not line.startswith(("#SBATCH -J", "#SBATCH -e",
                                                                                     "#SBATCH -o"))]
    skips = job_directives_skip(SlurmResources(ntasks=1))
    assert all(any(s in line for s in skips) for line in defaults), defaults
    assert all(s.startswith("#SBATCH ") for s in skips)


@pytest.mark.parametrize("field, value, message", [
    ("partition", "debug\n#SBATCH --uid=0", "partition: "),
    ("account", "x\n#SBATCH --export=ALL", "account: "),
])
def test_a_malicious_value_is_refused_before_any_script_exists(field, value, message):
    with pytest.raises(SlurmInputError, match=re.escape(message)):
        slurm_cluster_kwargs(SlurmResources(ntasks=1, **{field: value}), name="w", python=PY)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "w\n#SBATCH --uid=0"}, "job name"),
    ({"log_directory": "/tmp/logs\n#SBATCH --uid=0"}, "log_directory: "),
    ({"log_directory": "logs"}, "must be absolute"),
    ({"scheduler_host": "127.0.0.1 --x"}, "scheduler_host"),
    ({"python": ""}, "python"),
    ({"worker_extra_args": "--lifetime 1h"}, "worker_extra_args"),
])
def test_cluster_kwargs_refuse_unsafe_arguments(kwargs, message):
    args = {"name": "w", "python": PY, **kwargs}
    with pytest.raises(SlurmInputError, match=re.escape(message)):
        slurm_cluster_kwargs(SlurmResources(ntasks=1), **args)


def test_cluster_kwargs_shape():
    kw = slurm_cluster_kwargs(SlurmResources(ntasks=3), name="w", python=PY)
    assert (kw["cores"], kw["processes"], kw["nanny"], kw["job_script_prologue"]) == (1, 1, False, [])
    assert kw["scheduler_options"]["host"] == "127.0.0.1"
    assert kw["job_extra_directives"][0] == "--ntasks=3"
    assert "log_directory" not in kw and "walltime" not in kw and "queue" not in kw


# --------------------------------------------------------------------------- the job step

def test_srun_command_plain():
    argv = run_argv("/runs/k3v9x0q2m7ab", python=PY)
    assert argv == [PY, "-m", "weldsim_hpc.run", "/runs/k3v9x0q2m7ab"]
    assert srun_command(4, argv) == ["srun", "--mpi=pmix", "--export=ALL", "-n", "4", *argv]
    assert srun_command(2, argv, cpus_per_task=3)[:6] == ["srun", "--mpi=pmix", "--export=ALL", "-n", "2",
                                                          "--cpus-per-task=3"]


def test_run_argv_is_absolute_and_resumes():
    argv = run_argv("runs/abc", python="python3", resume=True)
    assert Path(argv[3]).is_absolute() and argv[3].endswith("runs/abc") and argv[-1] == "--resume"


def test_srun_command_in_the_image(tmp_path):
    image = tmp_path / "weldsim.sif"
    image.write_bytes(b"SIF stand-in")
    argv = run_argv("/scratch/runs/k3v9x0q2m7ab", python="python3")
    cmd = srun_command(2, argv, image=image, binds=["/scratch/runs"])
    assert cmd == ["srun", "--mpi=pmix", "--export=ALL", "-n", "2", "apptainer", "exec", "--bind",
                   "/scratch/runs:/scratch/runs", str(image), *argv]


def test_srun_command_refusals(tmp_path):
    argv = ["python3", "-c", "pass"]
    with pytest.raises(SlurmInputError, match="pmix is the one"):
        srun_command(2, argv, mpi="openmpi")
    with pytest.raises(SlurmInputError, match="non-empty list"):
        srun_command(2, "python3 -c pass")
    with pytest.raises(SlurmInputError, match="non-empty list"):
        srun_command(2, [])
    with pytest.raises(SlurmInputError, match="ntasks"):
        srun_command(0, argv)
    with pytest.raises(SlurmInputError, match="give image="):
        srun_command(2, argv, binds=["/scratch"])
    with pytest.raises(ValueError, match="does not exist"):
        srun_command(2, argv, image=tmp_path / "missing.sif")


def test_srun_environment_keeps_the_allocation_and_drops_mpi_leftovers():
    base = {"PATH": "/usr/bin", "HOME": "/root", "SLURM_JOB_ID": "14", "SLURM_NTASKS": "2",
            "SLURM_EXPORT_ENV": "PATH,HOME", "OMPI_MCA_x": "1", "PMIX_RANK": "0", "PYTHONPATH": "/x",
            "OMP_NUM_THREADS": "8", "H2_RANDOM": "1"}
    env = srun_environment(base)
    assert env["SLURM_JOB_ID"] == "14" and env["SLURM_NTASKS"] == "2" and env["PATH"] == "/usr/bin"
    assert env["OMP_NUM_THREADS"] == "1" and env["OPENBLAS_NUM_THREADS"] == "1"
    assert not [k for k in env if k.startswith(("OMPI_", "PMIX_", "PYTHONPATH", "H2_"))]
    with pytest.raises(SlurmInputError, match="SLURM_JOB_ID is not set"):
        srun_environment({"PATH": "/usr/bin"})


# --------------------------------------------------------------------------- commands

def test_query_commands():
    assert squeue_command(["12", "12_3", "12"]) == ["squeue", "--noheader", f"--format={SQUEUE_FORMAT}",
                                                    "--jobs=12,12_3"]
    assert squeue_command(["5"], all_states=True) == ["squeue", "--noheader", f"--format={SQUEUE_FORMAT}",
                                                      "--states=all", "--jobs=5"]
    assert sacct_command(["7"])[1:-1] == list(st.SACCT_ARGS)
    assert sacct_command("7") == ["sacct", "--parsable2", "--noheader", "--duplicates",
                                  "--format=JobID,JobName,State,ExitCode,Start,End,Elapsed,NodeList,Reason",
                                  "--jobs=7"]
    assert scancel_command(["7", "8"]) == ["scancel", "7", "8"]
    assert scancel_command(["7"], signal="USR1") == ["scancel", "--signal=USR1", "7"]
    assert scancel_command(["7"], signal="TERM", full=True) == ["scancel", "--signal=TERM", "--full", "7"]


def test_query_commands_refuse_bad_ids_and_signals():
    with pytest.raises(SlurmInputError, match="not a Slurm job id"):
        squeue_command(["1", "2 --me"])
    with pytest.raises(SlurmInputError, match="no job ids"):
        sacct_command([])
    with pytest.raises(SlurmInputError, match="use one of"):
        scancel_command(["1"], signal="HUP; rm")


def test_unknown_job_error_is_recognised():
    stderr = recorded("h2_squeue_invalid_job_stderr.txt")
    assert st.is_unknown_job_error(stderr)
    assert not st.is_unknown_job_error("squeue: error: Unable to contact slurm controller (connect failure)")


# --------------------------------------------------------------------------- sbatch

def test_sbatch_parsable_recorded():
    assert parse_sbatch_parsable(recorded("h2_sbatch_parsable.txt")) == recorded("h2_sbatch_parsable.txt").strip()


@pytest.mark.parametrize("text, job", [("123\n", "123"), ("123;weldsim\n", "123"), ("  9 ", "9")])
def test_sbatch_parsable_forms(text, job):
    assert parse_sbatch_parsable(text) == job


@pytest.mark.parametrize("text", ["", "\n", "Submitted batch job 123", "sbatch: error: Batch job submission failed",
                                  "123\n124", "12a", "123;", "123;clu ster"])
def test_sbatch_parsable_refuses_anything_else_and_says_to_check_squeue(text):
    with pytest.raises(SlurmOutputError, match="check squeue before submitting again"):
        parse_sbatch_parsable(text)


# --------------------------------------------------------------------------- squeue

def test_squeue_recorded_mixed_running_held_and_pending_array():
    rows = parse_squeue(recorded("h2_squeue_mixed.txt"))
    running = [r for r in rows.values() if r.name == "h2-cancel"][0]
    assert (running.state, running.reason, running.nodes, running.run_state) == ("RUNNING", None, "vm",
                                                                                  RunState.RUNNING)
    assert running.elapsed_s is not None and running.elapsed_s >= 0
    held = [r for r in rows.values() if r.name == "h2-held"][0]
    assert (held.state, held.reason, held.nodes, held.elapsed_s) == ("PENDING", "JobHeldUser", "", 0)
    array = [r for r in rows.values() if r.name == "h2-array"][0]
    assert re.fullmatch(r"[0-9]+_\[5-7\]", array.job_id) and array.array_job_id == array.job_id.split("_")[0]
    assert array.run_state is RunState.QUEUED


def test_squeue_recorded_array_task_running_beside_its_pending_siblings():
    rows = parse_squeue(recorded("h2_squeue_array.txt"))
    base = next(iter(rows.values())).array_job_id
    assert rows[f"{base}_5"].state == "RUNNING"
    assert rows[f"{base}_[6-7]"].state == "PENDING" and rows[f"{base}_[6-7]"].reason == "JobHeldUser"


def test_squeue_recorded_requeue_shows_completing_then_pending():
    (job_id, first), = parse_squeue(recorded("h2_squeue_requeue_completing.txt")).items()  # right after requeue
    (again, later), = parse_squeue(recorded("h2_squeue_requeue_pending.txt")).items()  # two seconds on
    assert job_id == again
    assert (first.state, first.run_state) == ("COMPLETING", RunState.RUNNING)
    assert (later.state, later.reason, later.run_state) == ("PENDING", "BeginTime", RunState.QUEUED)


def test_squeue_recorded_just_ended_job_is_simply_absent():
    assert parse_squeue(recorded("h2_squeue_just_ended.txt")) == {}


def test_squeue_recorded_states_all_shows_a_job_that_just_failed():
    (job_id, row), = parse_squeue(recorded("h2_squeue_states_all_failed.txt")).items()
    assert (row.state, row.reason, row.run_state) == ("FAILED", "NonZeroExitCode", RunState.FAILED)


def test_squeue_edge_cases():
    text = ("JOBID|STATE|REASON|TIME|NODELIST|NAME\n"
            "5|RUNNING|None|1-02:03:04|node[1-3]|a|b\n"
            "\n"
            "6_2|COMPLETING|None|INVALID|n1|x\n"
            "7+0|SUSPENDED|None|5:00|n1|het\n")
    rows = parse_squeue(text)
    assert rows["5"].name == "a|b" and rows["5"].elapsed_s == 93784 and rows["5"].nodes == "node[1-3]"
    assert rows["6_2"].elapsed_s is None and rows["6_2"].run_state is RunState.RUNNING
    assert rows["7+0"].run_state is RunState.RUNNING
    with pytest.raises(SlurmOutputError, match="squeue line 1: .* 3 of 6"):
        parse_squeue("5 RUNNING|x|y")
    with pytest.raises(SlurmOutputError, match="squeue line 2: 'abc' is not a job id"):
        parse_squeue("5|RUNNING|None|0:01|n|a\nabc|RUNNING|None|0:01|n|a")
    with pytest.raises(SlurmOutputError, match="not a Slurm duration"):
        parse_squeue("5|RUNNING|None|soon|n|a")


# --------------------------------------------------------------------------- sacct

def test_sacct_recorded_completed():
    rec = next(iter(parse_sacct(recorded("h2_sacct_completed.txt")).values()))
    assert (rec.step, rec.name, rec.state, rec.exit_code, rec.signal) == (None, "h2-ok", "COMPLETED", 0, 0)
    assert isinstance(rec.start, datetime) and rec.end >= rec.start and rec.elapsed_s == 2
    assert [s.step for s in rec.steps] == ["batch", "0"] and rec.step_record("0").name == "true"
    assert rec.previous == () and rec.nodes == "vm" and rec.reason is None
    assert final_state_or_none({rec.job_id: rec}, rec.job_id) is RunState.COMPLETED


def test_sacct_recorded_failed_keeps_the_exit_code_of_job_and_step():
    records = parse_sacct(recorded("h2_sacct_failed.txt"))
    (job_id, rec), = records.items()
    assert (rec.state, rec.exit_code, rec.signal) == ("FAILED", 3, 0)
    assert rec.step_record("0").exit_code == 3 and rec.step_record("0").state == "FAILED"
    assert final_state_or_none(records, job_id) is RunState.FAILED


def test_sacct_recorded_cancelled_running_and_never_started():
    records = parse_sacct(recorded("h2_sacct_cancelled.txt"))
    by_name = {r.name: r for r in records.values()}
    ran, held = by_name["h2-cancel"], by_name["h2-held"]
    assert (ran.state, ran.raw_state) == ("CANCELLED", "CANCELLED by 0")
    assert ran.step_record("batch").signal == 15 and ran.step_record("0").state == "CANCELLED"
    assert held.start is None and held.nodes == "" and held.reason == "JobHeldUser" and held.steps == ()
    assert {final_state_or_none(records, j) for j in records} == {RunState.CANCELLED}


def test_sacct_recorded_timeout_after_usr1_reached_the_step():
    records = parse_sacct(recorded("h2_sacct_timeout_usr1.txt"))
    (job_id, rec), = records.items()
    assert rec.state == "TIMEOUT" and rec.state in SCHEDULER_ENDED
    assert final_state_or_none(records, job_id) is RunState.FAILED  # the executor refines with the run directory
    step = rec.step_record("0")
    assert (step.state, step.exit_code) == ("FAILED", 4)  # the step trapped USR1 and exited 4 (interrupted)
    assert (rec.step_record("batch").state, rec.step_record("batch").signal) == ("CANCELLED", 15)
    assert rec.step_record("0").end < rec.end  # USR1 came well before the time limit


def test_sacct_recorded_requeue_keeps_the_latest_record():
    pending = parse_sacct(recorded("h2_sacct_requeue_pending.txt"))
    (job_id, rec), = pending.items()
    assert rec.state == "PENDING" and rec.start is None and rec.nodes == "" and rec.steps == ()
    assert [p.state for p in rec.previous] == ["REQUEUED"]
    assert [s.state for s in rec.previous[0].steps] == ["CANCELLED", "CANCELLED"]
    assert final_state_or_none(pending, job_id) is None  # requeued: Slurm will run it again

    done = parse_sacct(recorded("h2_sacct_requeued.txt"))
    rec = done[job_id]
    assert rec.state == "COMPLETED" and rec.start > rec.previous[0].end
    assert [s.state for s in rec.steps] == ["COMPLETED", "COMPLETED"]
    assert len(rec.previous) == 1 and rec.previous[0].run_state is RunState.QUEUED
    assert final_state_or_none(done, job_id) is RunState.COMPLETED


def test_sacct_recorded_running_is_not_final():
    records = parse_sacct(recorded("h2_sacct_running.txt"))
    (job_id, rec), = records.items()
    assert rec.state == "RUNNING" and rec.end is None
    assert final_state_or_none(records, job_id) is None


def test_sacct_recorded_array_tasks():
    records = parse_sacct(recorded("h2_sacct_array.txt"))
    done = [r for j, r in records.items() if re.fullmatch(r"[0-9]+_5", j)][0]
    rest = [r for j, r in records.items() if j.endswith("_[6-7]")][0]
    assert done.state == "COMPLETED" and [s.step for s in done.steps] == ["batch"]
    assert rest.state == "CANCELLED" and rest.start is None
    assert final_state_or_none(records, done.job_id) is RunState.COMPLETED


def test_sacct_recorded_dask_worker_job_and_its_srun_step():
    (job_id, rec), = parse_sacct(recorded("h2_sacct_dask_worker.txt")).items()
    assert rec.run_state is RunState.CANCELLED  # the cluster closed the worker's job…
    assert rec.step_record("0").state == "COMPLETED" and rec.step_record("0").exit_code == 0  # …the run had finished


def test_sacct_recorded_node_fail_then_requeue():
    """A requeueable job on a node set DOWN (recorded by the cluster helper: sacct_requeued_*)."""
    early = parse_sacct(recorded("sacct_requeued_after_node_down_2s.txt"))
    (job_id, rec), = early.items()
    assert rec.state == "NODE_FAIL" and rec.previous == ()
    assert [(s.state, s.exit_code, s.signal) for s in rec.steps] == [("CANCELLED", None, None)] * 2
    # sacct alone would call it final for a few seconds; squeue already shows the requeued job
    assert final_state_or_none(early, job_id) is RunState.FAILED
    live = parse_squeue(recorded("squeue_requeued_after_node_down.txt"))
    assert live[job_id].state == "PENDING" and live[job_id].reason == "BeginTime"
    assert final_state_or_none(early, job_id, live=live) is None

    (job_id5, later), = parse_sacct(recorded("sacct_requeued_after_node_down_5s.txt")).items()
    assert later.state == "PENDING" and [p.state for p in later.previous] == ["NODE_FAIL"]

    done = parse_sacct(recorded("sacct_requeued_completed.txt"))
    assert done[job_id].state == "COMPLETED" and [p.state for p in done[job_id].previous] == ["NODE_FAIL"]
    assert final_state_or_none(done, job_id, live={}) is RunState.COMPLETED
    plain = parse_sacct(recorded("sacct_requeued_completed_without_duplicates.txt"))
    assert plain[job_id].state == "COMPLETED" and plain[job_id].previous == ()


def test_recorded_cluster_helper_squeue_forms():
    arrays = parse_squeue(recorded("squeue_array_throttled.txt"))
    throttled = [r for j, r in arrays.items() if "[" in j][0]
    assert throttled.job_id.endswith("_[2-3%2]") and throttled.reason == "JobArrayTaskLimit"
    (job_id, done), = parse_squeue(recorded("squeue_completed_states_all.txt")).items()
    assert done.run_state is RunState.COMPLETED
    assert parse_squeue(recorded("squeue_completed.txt")) == {} == parse_squeue(recorded("squeue_cancelled.txt"))
    assert st.is_unknown_job_error(recorded("squeue_purged_job.txt"))
    assert parse_sbatch_parsable(recorded("sbatch_parsable_array.txt")).isdigit()
    with pytest.raises(SlurmOutputError):
        parse_sbatch_parsable(recorded("sbatch_error_invalid_partition.txt"))


def test_sacct_missing_job_is_unknown_not_finished():
    records = parse_sacct(recorded("h2_sacct_missing.txt"))
    assert records == {}
    assert final_state_or_none(records, "999999") is None


def test_sacct_edge_cases():
    text = ("JobID|JobName|State|ExitCode|Start|End|Elapsed|NodeList|Reason\n"
            "40|a|b|FAILED|1:9|2024-05-01T12:00:00|2024-05-01T12:00:01|00:00:01|n1|None\n"
            "40.extern|extern|COMPLETED|0:0|2024-05-01T12:00:00|2024-05-01T12:00:01|00:00:01|n1|\n"
            "41|x|NODE_FAIL|0:0|2024-05-01T12:00:00|2024-05-02T13:00:00|1-01:00:00|n[1-2]|None\n")
    records = parse_sacct(text)
    assert records["40"].name == "a|b" and (records["40"].exit_code, records["40"].signal) == (1, 9)
    assert records["40"].step_record("extern").state == "COMPLETED"
    assert records["41"].elapsed_s == 90000 and records["41"].state in SCHEDULER_ENDED
    with pytest.raises(SlurmOutputError, match="comes before any record of job 42"):
        parse_sacct("42.batch|batch|COMPLETED|0:0|Unknown|Unknown|00:00:00|n1|\n")
    with pytest.raises(SlurmOutputError, match="sacct line 1: .* 3 of 9"):
        parse_sacct("1|2|3")
    with pytest.raises(SlurmOutputError, match="not a sacct ExitCode"):
        parse_sacct("1|a|FAILED|x|Unknown|Unknown|00:00:00|n|None")
    with pytest.raises(SlurmOutputError, match="not a time"):
        parse_sacct("1|a|FAILED|0:0|yesterday|Unknown|00:00:00|n|None")


def test_parse_exit_code():
    assert parse_exit_code("0:0") == (0, 0)
    assert parse_exit_code("3:0") == (3, 0)
    assert parse_exit_code("0:15") == (0, 15)
    with pytest.raises(SlurmOutputError):
        parse_exit_code("3")


# --------------------------------------------------------------------------- states

SLURM_22_05_STATES = {  # job_state_string(), src/common/slurm_protocol_defs.c
    "PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "COMPLETING", "STAGE_OUT", "CONFIGURING", "RESIZING", "REQUEUED",
    "REQUEUE_FED", "REQUEUE_HOLD", "SPECIAL_EXIT", "STOPPED", "REVOKED", "RESV_DEL_HOLD", "SIGNALING",
}


def test_the_table_covers_every_slurm_state_and_only_those():
    assert set(SLURM_TO_RUN_STATE) == SLURM_22_05_STATES
    assert all(isinstance(v, RunState) for v in SLURM_TO_RUN_STATE.values())
    assert SCHEDULER_ENDED <= {s for s, r in SLURM_TO_RUN_STATE.items() if r is RunState.FAILED}


@pytest.mark.parametrize("slurm, run", [
    ("PENDING", RunState.QUEUED), ("REQUEUED", RunState.QUEUED), ("REQUEUE_HOLD", RunState.QUEUED),
    ("SPECIAL_EXIT", RunState.QUEUED), ("CONFIGURING", RunState.QUEUED), ("RUNNING", RunState.RUNNING),
    ("COMPLETING", RunState.RUNNING), ("SUSPENDED", RunState.RUNNING), ("COMPLETED", RunState.COMPLETED),
    ("CANCELLED by 0", RunState.CANCELLED), ("CANCELLED+", RunState.CANCELLED), ("FAILED", RunState.FAILED),
    ("TIMEOUT", RunState.FAILED), ("NODE_FAIL", RunState.FAILED), ("OUT_OF_MEMORY", RunState.FAILED),
    ("PREEMPTED", RunState.FAILED), ("REVOKED", RunState.LOST), ("running", RunState.RUNNING),
])
def test_run_state_of(slurm, run):
    assert run_state_of(slurm) is run


def test_run_state_of_refuses_unknown_states():
    for bad in ("FINISHED", "", "DONE by 0"):
        with pytest.raises(SlurmOutputError, match=r"unknown Slurm job state .* \(known: BOOT_FAIL, CANCELLED"):
            run_state_of(bad)


#: recorded stderr (error messages), not output in our formats (see data/README.md and h2_record.sh)
STDERR_FILES = {"squeue_purged_job.txt", "sbatch_error_invalid_partition.txt", "h2_squeue_invalid_job_stderr.txt"}


def _recorded_outputs(kind: str) -> list[Path]:
    paths = [p for p in sorted(DATA.glob("*.txt")) if kind in p.name and p.name not in STDERR_FILES]
    assert paths, f"no recorded {kind} output in {DATA}"
    return paths


def test_recorded_stderr_files_are_errors():
    for name in STDERR_FILES:
        assert "error" in recorded(name)


@pytest.mark.parametrize("path", _recorded_outputs("sacct"), ids=lambda p: p.name)
def test_every_recorded_sacct_output_parses(path):
    for job_id, rec in parse_sacct(path.read_text()).items():
        assert rec.job_id == job_id and rec.step is None
        assert all(s.job_id == job_id and s.step for s in rec.steps)
        assert isinstance(rec.run_state, RunState)
        assert all(isinstance(p.run_state, RunState) for p in rec.previous)


@pytest.mark.parametrize("path", _recorded_outputs("squeue"), ids=lambda p: p.name)
def test_every_recorded_squeue_output_parses(path):
    text = path.read_text()
    assert len(parse_squeue(text)) == len([line for line in text.splitlines() if line.strip()])


def test_every_state_in_the_recorded_files_is_in_the_table():
    seen = set()
    for path in _recorded_outputs("sacct"):
        for rec in parse_sacct(path.read_text()).values():
            seen |= {r.state for r in (rec, *rec.previous, *rec.steps, *(s for p in rec.previous for s in p.steps))}
    for path in _recorded_outputs("squeue"):
        seen |= {row.state for row in parse_squeue(path.read_text()).values()}
    assert {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "RUNNING", "PENDING", "REQUEUED",
            "COMPLETING"} <= seen
    assert not seen - set(SLURM_TO_RUN_STATE)
    for state in seen:
        run_state_of(state)


def test_final_state_or_none():
    rec = next(iter(parse_sacct(recorded("h2_sacct_completed.txt")).values()))
    assert final_state_or_none({}, "5") is None
    assert final_state_or_none({rec.job_id: rec}, rec.job_id) is RunState.COMPLETED
    pending = dataclasses.replace(rec, state="PENDING")
    assert final_state_or_none({rec.job_id: pending}, rec.job_id) is None
    row = st.SqueueRow(rec.job_id, "RUNNING", None, 5, "vm", rec.name)
    assert final_state_or_none({rec.job_id: rec}, rec.job_id, live={rec.job_id: row}) is None
    gone = dataclasses.replace(row, state="COMPLETED")
    assert final_state_or_none({rec.job_id: rec}, rec.job_id, live={rec.job_id: gone}) is RunState.COMPLETED
    with pytest.raises(SlurmInputError):
        final_state_or_none({}, "5; rm")


def test_this_module_imports_no_mpi_and_no_dask_at_import():
    import subprocess

    code = ("import sys, weldsim_hpc.executors.slurm_text; "
            "print(sorted(m for m in ('mpi4py','dolfinx','petsc4py','dask','distributed','dask_jobqueue') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
