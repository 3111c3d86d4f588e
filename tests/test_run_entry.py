"""The job entry point under real mpirun: exit codes, progress, signals, kill and resume.

The test process never imports mpi4py or dolfinx (it launches mpirun); every run here
is a real dolfinx/PETSc solve of a small transient thermal case.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from weldsim_hpc.case_io import load_case
from weldsim_hpc.checkpoint import archived_attempts, read_latest_checkpoint
from weldsim_hpc.launch import clean_environment, mpi_command, set_run_ranks
from weldsim_hpc.prepare import prepare_run
from weldsim_hpc.progress_reader import ProgressReader
from weldsim_hpc.results import read_metrics
from weldsim_hpc.run_paths import RunPaths

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "examples" / "tab_weld_cu_al_transient.toml"
PY = sys.executable


def stack_case(end_s: float = 0.5, dt_s: float = 0.05, every: int = 2):
    case = load_case(STACK, preset="ci")
    return case.model_copy(update={"time": case.time.model_copy(
        update={"end_s": end_s, "dt_s": dt_s, "checkpoint_every": every})})


def start(run_dir: Path, ranks: int, resume: bool = False) -> subprocess.Popen:
    return subprocess.Popen(mpi_command(run_dir, ranks, python=PY, resume=resume), env=clean_environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def run(run_dir: Path, ranks: int, resume: bool = False, timeout: float = 300) -> tuple[int, str]:
    proc = start(run_dir, ranks, resume)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(errors="replace")


def final_checkpoint(paths: RunPaths, attempt_file: Path | None = None):
    provenance = json.loads(paths.provenance_json.read_text())
    path = attempt_file or paths.progress_h5
    return read_latest_checkpoint(path, provenance["case_hash"], provenance["mesh_hash"])


def rank_pids(run_dir: Path) -> list[int]:
    """Pids of the entry-point processes (the ranks, not mpirun) of a run."""
    out = subprocess.run(["pgrep", "-f", f"weldsim_hpc.run {run_dir}"], capture_output=True, text=True).stdout
    pids = []
    for pid in map(int, out.split()):
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if cmd and not cmd[0].endswith(b"mpirun"):
            pids.append(pid)
    return pids


def wait_for_checkpoints(paths: RunPaths, count: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    """Tail progress.h5 from this process until `count` checkpoints exist; return rows seen."""
    deadline = time.monotonic() + timeout
    seen_rows = 0
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        if paths.progress_h5.exists():
            with ProgressReader(paths.progress_h5) as reader:
                seen_rows += len(reader.poll().rows)
            with h5py.File(paths.progress_h5, "r", swmr=True) as f:
                if f["checkpoints/index"].shape[0] >= count:
                    return seen_rows
        time.sleep(0.05)
    raise AssertionError(f"no {count} checkpoints within {timeout} s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 1-rank run of the long case: metrics and final checkpoint."""
    paths = prepare_run(stack_case(end_s=1.0, dt_s=0.002, every=50), tmp_path_factory.mktemp("ref"), ranks=1)
    code, out = run(paths.root, 1)
    assert code == 0, out
    return paths, read_metrics(paths), final_checkpoint(paths)


def test_thermal_example_on_two_ranks_matches_one_rank(tmp_path):
    metrics = {}
    for ranks in (1, 2):
        paths = prepare_run(stack_case(), tmp_path / f"n{ranks}", ranks=ranks)
        code, out = run(paths.root, ranks)
        assert code == 0, out
        metrics[ranks] = read_metrics(paths)
        for name in ("fields.xdmf", "fields.h5", "fields.pvd", "metrics.json"):
            assert (paths.results_dir / name).is_file(), name
        assert "completed" in paths.solver_log.read_text()
    one, two = metrics[1], metrics[2]
    for name in ("T_max_K", "T_max_over_solidus", "energy_in_J", "probe.weld_centre.temperature_K"):
        assert two[name].value == pytest.approx(one[name].value, rel=1e-6), name
    assert one["T_max_K"].value > 400.0  # the weld heats well above room temperature


def test_wrong_rank_count_is_refused(tmp_path):
    paths = prepare_run(stack_case(), tmp_path, ranks=2)
    code, _ = run(paths.root, 1)
    assert code == 2
    assert "prepared for 2 rank(s) but started on 1" in paths.solver_log.read_text()


def test_kill_on_every_rank_then_resume_on_one_rank(tmp_path, reference):
    ref_paths, ref_metrics, ref_ckpt = reference
    paths = prepare_run(stack_case(end_s=1.0, dt_s=0.002, every=50), tmp_path, ranks=2)
    proc = start(paths.root, 2)
    rows_while_running = wait_for_checkpoints(paths, 2, proc)
    assert rows_while_running > 0  # a reader in another process saw rows before the end
    for pid in rank_pids(paths.root):
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not paths.metrics_json.exists()

    set_run_ranks(paths, 1)
    code, out = run(paths.root, 1, resume=True)
    assert code == 0, out
    assert "resuming from step" in paths.solver_log.read_text()
    resumed = final_checkpoint(paths)
    assert resumed.step == ref_ckpt.step
    assert np.max(np.abs(resumed.values - ref_ckpt.values)) <= 1e-8 * np.max(np.abs(ref_ckpt.values))
    metrics = read_metrics(paths)
    assert metrics["T_max_K"].value == pytest.approx(ref_metrics["T_max_K"].value, rel=1e-8)
    assert metrics["energy_in_J"].value == pytest.approx(ref_metrics["energy_in_J"].value, rel=1e-8)

    # resuming a completed run does nothing
    attempts = len(archived_attempts(paths.root))
    code, _ = run(paths.root, 1, resume=True)
    assert code == 0 and len(archived_attempts(paths.root)) == attempts
    assert "already completed" in paths.solver_log.read_text()


def test_sigterm_ends_with_4_and_a_usable_checkpoint(tmp_path, reference):
    _, ref_metrics, ref_ckpt = reference
    paths = prepare_run(stack_case(end_s=1.0, dt_s=0.002, every=50), tmp_path, ranks=2)
    proc = start(paths.root, 2)
    wait_for_checkpoints(paths, 1, proc)
    for pid in rank_pids(paths.root):
        os.kill(pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 4, out.decode(errors="replace")
    with ProgressReader(paths.progress_h5) as reader:
        _, status = reader.latest()
    assert status.state == "interrupted"
    ckpt = final_checkpoint(paths)
    assert ckpt is not None and 0 < ckpt.step < ref_ckpt.step

    code, out = run(paths.root, 2, resume=True)
    assert code == 0, out
    assert np.max(np.abs(final_checkpoint(paths).values - ref_ckpt.values)) <= 1e-8 * np.max(ref_ckpt.values)


def test_changed_case_refuses_to_resume(tmp_path):
    paths = prepare_run(stack_case(end_s=0.2, dt_s=0.05, every=1), tmp_path, ranks=1)
    code, out = run(paths.root, 1)
    assert code == 0, out
    paths.metrics_json.unlink()  # not completed: a resume would continue
    data = json.loads(paths.case_json.read_text())
    data["thermal"]["T_initial_K"] = 300.0
    paths.case_json.write_text(json.dumps(data))
    code, _ = run(paths.root, 1, resume=True)
    assert code == 2
    assert "the case changed since, so it cannot resume from it" in paths.solver_log.read_text()


COUPLED = ROOT / "examples" / "horn_coupled.toml"


def test_coupled_example_on_two_ranks_matches_one_rank(tmp_path):
    metrics = {}
    for ranks in (1, 2):
        paths = prepare_run(load_case(COUPLED, preset="ci"), tmp_path / f"n{ranks}", ranks=ranks)
        code, out = run(paths.root, ranks)
        assert code == 0, out
        metrics[ranks] = read_metrics(paths)
        assert (paths.results_dir / "fields.pvd").is_file()
    for name in ("T_max_K", "max_von_mises_Pa", "max_displacement_m", "probe.face_centre.uz_m",
                 "probe.face_centre.temperature_K"):
        assert metrics[2][name].value == pytest.approx(metrics[1][name].value, rel=1e-6), name
    # the hot weld face grows the horn: uz at the face is positive, tens of micrometres
    assert 1e-6 < metrics[1]["probe.face_centre.uz_m"].value < 1e-4


def test_unconstrained_structure_exits_2_with_the_message(tmp_path):
    case = load_case(COUPLED, preset="ci")
    free = [bc for bc in case.boundary_conditions if bc.type != "fixed"]
    case = case.model_copy(update={"boundary_conditions": free})
    paths = prepare_run(case, tmp_path, ranks=2)
    code, _ = run(paths.root, 2)
    assert code == 2
    assert ("the structure is not constrained: add a fixed boundary or use a free-free modal analysis"
            in paths.solver_log.read_text())


def test_a_failure_on_one_rank_ends_the_whole_run_within_30_s(tmp_path):
    """Rank 1 fails alone while rank 0 waits in a collective: logged with its rank, then abort."""
    from weldsim_hpc.run import FAULT_RANK_VARIABLE

    paths = prepare_run(stack_case(), tmp_path, ranks=2)
    env = {**clean_environment(), FAULT_RANK_VARIABLE: "1"}
    began = time.monotonic()
    proc = subprocess.Popen(mpi_command(paths.root, 2, python=PY), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    out, _ = proc.communicate(timeout=60)
    elapsed = time.monotonic() - began
    text = out.decode(errors="replace")
    assert proc.returncode != 0
    assert elapsed < 30.0, elapsed
    assert "rank 1" in text and "fault injected on rank 1" in text
    assert "aborting the whole run" in text
    assert not paths.metrics_json.exists()


def test_changed_mesh_refuses_to_resume(tmp_path):
    paths = prepare_run(stack_case(end_s=0.2, dt_s=0.05, every=1), tmp_path, ranks=1)
    code, out = run(paths.root, 1)
    assert code == 0, out
    paths.metrics_json.unlink()
    with h5py.File(paths.mesh_h5, "r+") as f:
        f["mesh/geometry"][...] = f["mesh/geometry"][...] * 1.001
    code, _ = run(paths.root, 1, resume=True)
    assert code == 2
    assert "the mesh changed since, so it cannot resume from it" in paths.solver_log.read_text()


def test_preview_backend_run_says_it_is_a_1d_estimate(tmp_path):
    case = load_case(ROOT / "examples" / "horn_20khz_stepped_modal.toml")
    case = case.model_copy(update={"solver": case.solver.model_copy(update={"backend": "preview"})})
    paths = prepare_run(case, tmp_path, ranks=1)
    code, out = run(paths.root, 1)
    assert code == 0, out
    metrics = read_metrics(paths)
    assert metrics["gain"].value == pytest.approx(4.0, rel=0.01)  # quarter-wave-like sections, area ratio 4
    assert 19_000 < metrics["f_working_Hz"].value < 22_000
    assert json.loads((paths.results_dir / "preview.json").read_text())["basis"] == "1-D estimate"


@pytest.mark.parametrize("example", ["horn_20khz_stepped_modal", "horn_exponential_harmonic"])
def test_horn_examples_run_at_ci_preset(tmp_path, example):
    """The horn examples complete on 2 ranks; the 3-D working frequency sits a little below
    the 1-D estimate (the step and lateral inertia lower it) and near the 20 kHz target."""
    paths = prepare_run(load_case(ROOT / "examples" / f"{example}.toml", preset="ci"), tmp_path, ranks=2)
    code, out = run(paths.root, 2)
    assert code == 0, out
    metrics = read_metrics(paths)
    f3d, f1d = metrics["f_working_Hz"].value, metrics["f_1d_estimate_Hz"].value
    assert abs(f3d - 20_000.0) < 600.0
    assert 0.0 < (f1d - f3d) / f1d < 0.06
    if example == "horn_exponential_harmonic":
        assert metrics["gain"].value == pytest.approx(2.0, rel=0.03)  # diameter ratio 2
        assert 0.9 < metrics["uniformity"].value <= 1.0
        assert metrics["output_amplitude_0pk_m"].value == pytest.approx(15e-6)
        assert (paths.results_dir / "curves.json").is_file()
    else:
        assert (paths.results_dir / "modes.json").is_file()
        assert metrics["mode_separation_flag"].value in (0.0, 1.0)
