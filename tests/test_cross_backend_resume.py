"""Resume a transient thermal run on the OTHER 3-D backend: fenicsx (2 ranks) → scipy and
scipy → fenicsx (2 ranks), with `weldsim resume RUN --backend B`.

Both backends checkpoint the temperature in field_order's rank-independent key order, then
the cumulative heat input and the running peak of each volume, and case_hash leaves
solver.backend out (as it leaves solver.ranks out), so a checkpoint of one backend is a
valid start for the other. A run interrupted after a checkpoint and resumed on the other
backend must end where an uninterrupted run ends: final temperatures (the last checkpoint,
global order) and metrics within 1e-6 relative of the uninterrupted run on EITHER backend.

Jobs are started by `weldsim_hpc.launch` (launch, cancel = SIGUSR1 to the job's process
group, watch) and resumed through the installed `weldsim` script, as a user would; this
process never imports mpi4py or dolfinx.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from weldsim_hpc.case_io import load_case
from weldsim_hpc.checkpoint import Checkpoint, archived_attempts, read_latest_checkpoint
from weldsim_hpc.launch import LaunchError, cancel, launch, set_run_backend, watch
from weldsim_hpc.prepare import case_hash, prepare_run
from weldsim_hpc.results import read_metrics
from weldsim_hpc.run_paths import RunPaths, read_attempts

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "examples" / "tab_weld_cu_al_transient.toml"
WELDSIM = Path(sys.executable).parent / "weldsim"
RANKS = {"fenicsx": 2, "scipy": 1}
T_INITIAL = 293.15
REL = 1e-6
METRICS = ("T_max_K", "T_max_over_solidus", "energy_in_J", "n_time_steps", "probe.weld_centre.temperature_K")


def stack_case(backend: str):
    """The tab-weld example at its ci preset: 200 steps of 5 ms (weld 0.3 s, then cooling),
    a checkpoint every 10 steps; long enough that a stop lands mid-run on either backend."""
    case = load_case(STACK, preset="ci")
    return case.model_copy(update={
        "time": case.time.model_copy(update={"end_s": 1.0, "dt_s": 0.005, "checkpoint_every": 10}),
        "solver": case.solver.model_copy(update={"backend": backend})})


def weldsim(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(WELDSIM), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def run_to_end(paths: RunPaths, ranks: int) -> int:
    return watch(paths.root, launch(paths.root, ranks), lambda message: None)


def checkpoints_in(path: Path) -> int:
    try:
        with h5py.File(path, "r", swmr=True) as f:
            return int(f["checkpoints/index"].shape[0])
    except (OSError, KeyError):  # not there yet, or mid-creation
        return 0


def interrupt_after_checkpoints(paths: RunPaths, ranks: int, count: int = 2, timeout: float = 300) -> int:
    """Start the run, ask it to stop (SIGUSR1) once `count` checkpoints exist; its exit code."""
    proc = launch(paths.root, ranks)
    deadline = time.monotonic() + timeout
    while checkpoints_in(paths.progress_h5) < count:
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before it could be interrupted"
        assert time.monotonic() < deadline, f"no {count} checkpoints within {timeout} s"
        time.sleep(0.05)
    cancel(proc)
    return watch(paths.root, proc, lambda message: None)


def final_checkpoint(paths: RunPaths) -> tuple[Checkpoint, int]:
    """The last checkpoint of the run's current progress.h5 and the temperature's length."""
    provenance = json.loads(paths.provenance_json.read_text())
    with h5py.File(paths.progress_h5, "r", swmr=True) as f:
        size = int(re.match(r"temperature\[(\d+)\]", str(f.attrs["field_layout"])).group(1))
    return read_latest_checkpoint(paths.progress_h5, provenance["case_hash"], provenance["mesh_hash"]), size


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """backend -> RunPaths of the case run start to end on that backend."""
    runs = {}
    for backend, ranks in RANKS.items():
        paths = prepare_run(stack_case(backend), tmp_path_factory.mktemp(f"ref_{backend}"), ranks=ranks)
        code = run_to_end(paths, ranks)
        assert code == 0, paths.solver_log.read_text()[-3000:]
        runs[backend] = paths
    return runs


def assert_ends_like(paths: RunPaths, reference: RunPaths) -> str:
    """The final state and the metrics of `paths` agree with `reference` to REL."""
    (got, size), (ref, ref_size) = final_checkpoint(paths), final_checkpoint(reference)
    assert (got.step, got.t, size) == (ref.step, ref.t, ref_size)
    rise = ref.values[:size] - T_INITIAL
    dT = np.abs(got.values[:size] - ref.values[:size]).max() / rise.max()
    tail = np.abs(got.values[size:] / ref.values[size:] - 1).max()   # heat input, peak per volume
    assert dT < REL and tail < REL, f"final temperatures {dT:.2e} of the rise, heat input/peaks {tail:.2e}"
    mine, theirs = read_metrics(paths), read_metrics(reference)
    worst = {n: abs(mine[n].value / theirs[n].value - 1) for n in METRICS}
    assert max(worst.values()) < REL, worst
    return f"final T {dT:.1e} of the rise, heat input/peaks {tail:.1e}, metrics {max(worst.values()):.1e}"


@pytest.mark.parametrize("first, second, ranks", [("fenicsx", "scipy", None), ("scipy", "fenicsx", 2)],
                         ids=["fenicsx-2-ranks-to-scipy", "scipy-to-fenicsx-2-ranks"])
def test_interrupted_run_resumes_on_the_other_backend(tmp_path, uninterrupted, first, second, ranks):
    """Stopped after its second checkpoint, resumed on the other backend: scipy needs no
    --np (it runs on one process), fenicsx is given --np 2."""
    paths = prepare_run(stack_case(first), tmp_path / "runs", ranks=RANKS[first])
    assert interrupt_after_checkpoints(paths, RANKS[first]) == 4
    provenance = json.loads(paths.provenance_json.read_text())
    stopped = read_latest_checkpoint(paths.progress_h5, provenance["case_hash"], provenance["mesh_hash"])
    assert 0 < stopped.step < 200, stopped.step
    assert not paths.metrics_json.exists()

    out = weldsim("resume", paths.root, "--backend", second, *(("--np", ranks) if ranks else ()))
    assert out.returncode == 0, out.stdout + out.stderr
    solver = json.loads(paths.case_json.read_text())["solver"]
    assert (solver["backend"], solver["ranks"]) == (second, RANKS[second])
    assert read_metrics(paths)["ranks"].value == RANKS[second]
    assert [(a["attempt"], a["exit_code"]) for a in read_attempts(paths)] == [(1, 4), (2, 0)]
    log = paths.solver_log.read_text()
    assert f"on the {first} backend, {RANKS[first]} rank(s)" in log
    assert f"on the {second} backend, {RANKS[second]} rank(s) (resume)" in log
    assert f"resuming from step {stopped.step} " in log
    assert [n for n, _ in archived_attempts(paths.root)] == [1]
    for backend, reference in uninterrupted.items():
        print(f"\n{first} → {second} vs uninterrupted {backend}: {assert_ends_like(paths, reference)}")


# --- the rules, without running anything -------------------------------------------------------------
def fake_run(root: Path, backend: str = "fenicsx", ranks: int = 2, analysis: str = "thermal_transient") -> RunPaths:
    run_dir = root / "abc123def456"
    run_dir.mkdir(parents=True)
    (run_dir / "case.json").write_text(json.dumps({"analysis": analysis, "solver": {"backend": backend,
                                                                                       "ranks": ranks}}))
    (run_dir / "attempts.json").write_text("[]")
    return RunPaths.from_dir(run_dir)


def test_the_case_hash_leaves_out_how_a_run_is_executed():
    data = {"analysis": "thermal_transient", "solver": {"backend": "fenicsx", "ranks": 2, "rtol": 1e-8}}
    other = {"analysis": "thermal_transient", "solver": {"backend": "scipy", "ranks": 1, "rtol": 1e-8}}
    assert case_hash(data) == case_hash(other)
    assert case_hash(data) != case_hash({**data, "solver": {**data["solver"], "rtol": 1e-9}})


def test_set_run_backend_rewrites_the_backend_and_asks_for_one_rank_on_scipy(tmp_path):
    paths = fake_run(tmp_path)
    assert set_run_backend(paths, None, None) == ("fenicsx", None)
    assert set_run_backend(paths, "scipy", None) == ("scipy", 1)
    assert json.loads(paths.case_json.read_text())["solver"] == {"backend": "scipy", "ranks": 2}
    assert set_run_backend(paths, "auto", 3) == ("fenicsx", 3)   # auto: fenicsx where dolfinx is installed
    with pytest.raises(LaunchError, match="the scipy backend runs on one process"):
        set_run_backend(paths, "scipy", 2)
    assert json.loads(paths.case_json.read_text())["solver"]["backend"] == "fenicsx"


def test_resume_refuses_a_backend_that_cannot_continue_the_run(tmp_path):
    paths = fake_run(tmp_path)
    before = paths.case_json.read_text()
    for args, message in ((("--backend", "scipy", "--np", 2), "the scipy backend runs on one process"),
                          (("--backend", "preview"), "'preview' does not support analysis 'thermal_transient'")):
        out = weldsim("resume", paths.root, *args, timeout=60)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert message in " ".join(out.stderr.split()), out.stderr
        assert paths.case_json.read_text() == before
