"""Launching a run's job: the command and environment as text, refusal inside MPI, and
launch/watch end to end with FAKE entry points (tiny stand-in scripts, named fake_*,
until the real `weldsim_hpc.run` is tested through `weldsim run` in test_run_cli.py).

Never imports mpi4py or dolfinx in this process: it launches mpirun.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from weldsim_hpc.launch import (
    ENTRY,
    LaunchError,
    clean_environment,
    exit_code,
    launch,
    mpi_command,
    refuse_if_mpi_imported,
    set_run_ranks,
    watch,
)
from weldsim_hpc.run_paths import RunPaths, read_attempts

NASTY = "runs with space; rm -rf $HOME `id` 'q' \"dq\" & | > *"
PY = "/venv/bin/python"


# --- the command, as text ---------------------------------------------------------------
def test_one_rank_is_plain_python_without_mpirun():
    assert mpi_command("/runs/abc123def456", 1, python=PY) == [PY, "-m", "weldsim_hpc.run", "/runs/abc123def456"]


def test_many_ranks_as_root_use_mpirun_with_allow_run_as_root():
    cmd = mpi_command("/runs/abc123def456", 4, python=PY, resume=True, as_root=True)
    assert cmd == ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "4", PY, "-m", "weldsim_hpc.run",
                   "/runs/abc123def456", "--resume"]


def test_not_root_has_no_allow_run_as_root_and_srun_uses_pmix():
    assert "--allow-run-as-root" not in mpi_command("/r/abc123def456", 2, python=PY, as_root=False)
    assert mpi_command("/r/abc123def456", 2, python=PY, launcher="srun")[:4] == ["srun", "--mpi=pmix", "-n", "2"]


def test_run_dir_with_spaces_and_shell_metacharacters_stays_one_argument(tmp_path):
    run_dir = tmp_path / NASTY / "abc123def456"
    cmd = mpi_command(run_dir, 2, python=PY, as_root=False)
    assert cmd.count(str(run_dir)) == 1 and cmd[-1] == str(run_dir)
    assert all(isinstance(part, str) for part in cmd)


def test_relative_run_dir_is_made_absolute_so_it_never_reads_as_an_option():
    cmd = mpi_command("-n7", 1, python=PY)
    assert Path(cmd[-1]).is_absolute() and cmd[-1].endswith("/-n7")


@pytest.mark.parametrize("ranks", [0, -1, True, 2.0, "2"])
def test_ranks_must_be_a_positive_integer(ranks):
    with pytest.raises(LaunchError, match="ranks"):
        mpi_command("/r/abc123def456", ranks)


def test_unknown_launcher_is_refused_with_the_valid_ones():
    with pytest.raises(LaunchError, match="mpirun, srun"):
        mpi_command("/r/abc123def456", 2, launcher="mpiexec.hydra")


def test_entry_is_configurable():
    assert mpi_command("/r/abc123def456", 1, python=PY, entry=("/t/fake.py",)) == [PY, "/t/fake.py", "/r/abc123def456"]
    assert ENTRY == ("-m", "weldsim_hpc.run")


# --- the environment, as text -----------------------------------------------------------
def test_environment_is_an_allow_list_with_one_thread():
    base = {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C", "TMPDIR": "/tmp",
            "XDG_CACHE_HOME": "/c", "USER": "u", "LOGNAME": "u", "VIRTUAL_ENV": "/v",
            "OMPI_COMM_WORLD_SIZE": "2", "OMPI_MCA_btl": "self", "PMIX_RANK": "0", "PMI_SIZE": "2",
            "SLURM_JOB_ID": "7", "PYTHONPATH": "/evil", "LD_PRELOAD": "/x.so", "OMP_NUM_THREADS": "8",
            "HYDRA_PROXY": "1", "I_MPI_PIN": "1", "MPICH_X": "1", "OPAL_PREFIX": "/o"}
    env = clean_environment(base, as_root=False)
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C", "TMPDIR": "/tmp",
                   "XDG_CACHE_HOME": "/c", "USER": "u", "LOGNAME": "u", "VIRTUAL_ENV": "/v",
                   "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def test_environment_as_root_allows_openmpi_to_run_as_root():
    env = clean_environment({"PATH": "/bin", "OMPI_COMM_WORLD_RANK": "1"}, as_root=True)
    assert env["OMPI_ALLOW_RUN_AS_ROOT"] == env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"
    assert "OMPI_COMM_WORLD_RANK" not in env


def test_exit_code_of_a_signal_is_128_plus_n():
    assert (exit_code(0), exit_code(4), exit_code(-15)) == (0, 4, 143)


# --- refusing to launch from an MPI process ---------------------------------------------
def test_refuses_when_mpi4py_is_in_sys_modules_as_text():
    refuse_if_mpi_imported({"numpy": object()})
    with pytest.raises(LaunchError, match="imported mpi4py"):
        refuse_if_mpi_imported({"mpi4py": object()})


def test_refuses_to_launch_from_a_process_that_imported_mpi4py(tmp_path):
    run_dir = _fake_run(tmp_path, 1)
    code = textwrap.dedent(f"""
        import mpi4py
        from weldsim_hpc.launch import LaunchError, launch
        try:
            launch({str(run_dir)!r}, 1)
        except LaunchError as exc:
            print("REFUSED", exc)
        else:
            print("LAUNCHED")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=clean_environment())
    assert "REFUSED" in out.stdout and "mpi4py" in out.stdout, out.stdout + out.stderr
    assert read_attempts(RunPaths.from_dir(run_dir)) == []


# --- launch + watch with fake entry points ------------------------------------------------
FAKE_ENTRY = textwrap.dedent('''
    """A FAKE entry point: progress.h5 on rank 0, metrics, the exit code from fake_exit."""
    import json, os, sys, time
    from pathlib import Path
    from weldsim_hpc.checkpoint import start_attempt
    from weldsim_hpc.results import write_metrics
    from weldsim_hpc.states import RunState

    run_dir = Path(sys.argv[1])
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    (run_dir / f"fake_env.{rank}.json").write_text(json.dumps({"argv": sys.argv, "size": size,
                                                               "env": dict(os.environ)}))
    code = int((run_dir / "fake_exit").read_text())
    if rank == 0 and code != 3:
        with start_attempt(run_dir, is_writer=True, run_id=run_dir.name, case_hash="c", mesh_hash="m") as w:
            for step in range(3):
                w.progress(step, step * 0.1, 100.0 * step / 3, "solve", f"step {step}", force=True)
                time.sleep(0.2)
            if code == 0:
                write_metrics(run_dir / "results" / "metrics.json", {"T_max_K": 500.0})
                w.status(RunState.COMPLETED, "done")
            else:
                w.status(RunState.INTERRUPTED, "SIGTERM: checkpoint written")
    sys.exit(code)
''')


def _fake_run(root: Path, ranks: int, exit_with: int = 0) -> Path:
    run_dir = root / "abc123def456"
    (run_dir / "results").mkdir(parents=True)
    (run_dir / "case.json").write_text(json.dumps({"solver": {"ranks": ranks}}))
    (run_dir / "attempts.json").write_text("[]")
    (run_dir / "fake_exit").write_text(str(exit_with))
    return run_dir


def _fake_launch(run_dir: Path, ranks: int, tmp_path: Path, **kw):
    script = tmp_path / "fake_entry.py"
    script.write_text(FAKE_ENTRY)
    proc = launch(run_dir, ranks, entry=(str(script),), **kw)
    messages: list[dict] = []
    code = watch(run_dir, proc, messages.append, poll_s=0.1)
    return code, messages


def test_fake_entry_point_on_two_ranks_reports_progress_metrics_and_exit_code(tmp_path, monkeypatch):
    monkeypatch.setenv("OMPI_MCA_fake_leak", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "12345")
    run_dir = _fake_run(tmp_path / NASTY, 2)
    code, messages = _fake_launch(run_dir, 2, tmp_path)
    assert code == 0, (run_dir / "launcher.log").read_text()
    progress = [m for m in messages if m["type"] == "progress"]
    assert [m["message"] for m in progress] == ["step 0", "step 1", "step 2"]
    assert messages[-1]["type"] == "completed" and messages[-1]["metrics_summary"] == {"T_max_K": 500.0}
    assert sum(m["type"] in ("completed", "error") for m in messages) == 1
    for rank in (0, 1):
        seen = json.loads((run_dir / f"fake_env.{rank}.json").read_text())
        assert seen["argv"][1:] == [str(run_dir)] and seen["size"] == 2
        assert seen["env"]["OMP_NUM_THREADS"] == seen["env"]["OPENBLAS_NUM_THREADS"] == "1"
        assert "OMPI_MCA_fake_leak" not in seen["env"] and "SLURM_JOB_ID" not in seen["env"]
    (attempt,) = read_attempts(RunPaths.from_dir(run_dir))
    assert attempt["attempt"] == 1 and attempt["exit_code"] == 0
    assert "mpirun" in (run_dir / "launcher.log").read_text()


def test_fake_entry_point_interrupted_exits_4_and_resume_ignores_the_old_progress_file(tmp_path):
    run_dir = _fake_run(tmp_path, 1, exit_with=4)
    code, messages = _fake_launch(run_dir, 1, tmp_path)
    assert code == 4 and messages[-1]["type"] == "error" and messages[-1]["status"] == "interrupted"
    (run_dir / "fake_exit").write_text("0")
    code, messages = _fake_launch(run_dir, 1, tmp_path, resume=True)
    assert code == 0 and messages[-1]["type"] == "completed"
    assert [m["message"] for m in messages if m["type"] == "progress"] == ["step 0", "step 1", "step 2"]
    seen = json.loads((run_dir / "fake_env.0.json").read_text())
    assert seen["argv"][-1] == "--resume"
    assert [(a["attempt"], a["exit_code"]) for a in read_attempts(RunPaths.from_dir(run_dir))] == [(1, 4), (2, 0)]


def test_fake_entry_point_failing_before_progress_gets_an_error_message_from_its_exit_code(tmp_path):
    run_dir = _fake_run(tmp_path, 2, exit_with=3)
    code, messages = _fake_launch(run_dir, 2, tmp_path)
    assert code == 3
    assert [m["type"] for m in messages] == ["error"]
    assert "exit" in messages[0]["error"] and "code 3" in messages[0]["error"]


def test_launch_needs_a_prepared_run(tmp_path):
    (tmp_path / "abc123def456").mkdir()
    with pytest.raises(LaunchError, match="not a prepared run"):
        launch(tmp_path / "abc123def456", 1)


def test_set_run_ranks_rewrites_only_solver_ranks(tmp_path):
    paths = RunPaths.from_dir(_fake_run(tmp_path, 2))
    assert set_run_ranks(paths, None) == 2
    assert set_run_ranks(paths, 3) == 3
    assert json.loads(paths.case_json.read_text()) == {"solver": {"ranks": 3}}
