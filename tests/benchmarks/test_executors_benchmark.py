"""benchmarks/executors.py's plain-sbatch script renderer (pure text, no Slurm, no MPI).

The benchmark itself is run by hand (`.venv/bin/python benchmarks/executors.py`); here only
the script it submits: the run directory stays one quoted shell word, the directives are
the Slurm executor's own and validated, and bash accepts the script.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from weldsim_hpc.executors.slurm_text import SlurmInputError
from weldsim_hpc.run_paths import RunIdError

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "executors.py"
MPI_MODULES = ("mpi4py", "dolfinx", "petsc4py", "slepc4py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("weldsim_bench_executors", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(tmp_path: Path, parent: str = "runs root", run_id: str = "k3v9x0q2m7ab") -> Path:
    run = tmp_path / parent / run_id
    run.mkdir(parents=True)
    (run / "case.json").write_text("{}")
    return run


def step_argv(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("exec env -i "))
    words = shlex.split(line)
    return words[words.index("srun"):words.index("</dev/null")]


def test_the_run_dir_is_one_quoted_word_of_the_srun_step(bench, tmp_path):
    run = fake_run(tmp_path)  # a space in the runs root: quoting matters
    text = bench.render_sbatch(run, job_name="wsbench-k3v9x0q2m7ab", ntasks=2, python="/opt/py/bin/python")
    assert f"run_dir={shlex.quote(str(run))}" in text
    assert step_argv(text) == ["srun", "--mpi=pmix", "--export=ALL", "-n", "2", "/opt/py/bin/python", "-m",
                               "weldsim_hpc.run", str(run)]
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH ")]
    assert directives[:3] == ["#SBATCH --job-name=wsbench-k3v9x0q2m7ab", "#SBATCH --ntasks=2",
                              "#SBATCH --cpus-per-task=1"]
    assert "#SBATCH --no-requeue" in directives and "#SBATCH --signal=USR1@60" in directives
    assert not any("--partition" in d for d in directives)  # unset: the cluster's default, as the executor
    assert str(run) not in "\n".join(directives)  # the path is never on an #SBATCH line
    assert subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True, timeout=30).returncode == 0
    assert not any(m in sys.modules for m in MPI_MODULES)


def test_partition_is_validated_like_the_executor(bench, tmp_path):
    run = fake_run(tmp_path)
    text = bench.render_sbatch(run, job_name="wsbench-x", partition="debug")
    assert "#SBATCH --partition=debug" in text.splitlines()
    for bad in ("debug\n#SBATCH --uid=0", "de bug", "debug;rm", ""):
        with pytest.raises(SlurmInputError):
            bench.render_sbatch(run, job_name="wsbench-x", partition=bad)
    with pytest.raises(SlurmInputError):
        bench.render_sbatch(run, job_name="bad name\n")


def test_only_a_prepared_run_directory_is_rendered(bench, tmp_path):
    with pytest.raises(RunIdError):
        bench.render_sbatch(fake_run(tmp_path, run_id="not-a-run-id"), job_name="wsbench-x")
    bare = tmp_path / "empty" / "k3v9x0q2m7ab"
    bare.mkdir(parents=True)
    with pytest.raises(SlurmInputError, match="not a prepared run"):
        bench.render_sbatch(bare, job_name="wsbench-x")
