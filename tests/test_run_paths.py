"""RunPaths names every file of a run directory; run ids are validated; attempts.json round trips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from weldsim_hpc.errors import WeldSimError
from weldsim_hpc.run_paths import (
    RUN_ID_LENGTH,
    RunIdError,
    RunPaths,
    is_run_id,
    iter_runs,
    new_run_id,
    read_attempts,
    record_attempt_end,
    record_attempt_start,
    validate_run_id,
    write_json_atomic,
)

RID = "k3v9x0q2m7ab"


def test_new_run_ids_are_12_lowercase_alphanumerics_and_differ():
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == RUN_ID_LENGTH and i.isalnum() and i == i.lower() and is_run_id(i) for i in ids)


def test_every_file_of_the_design_layout(tmp_path):
    p = RunPaths.for_id(tmp_path, RID)
    assert p.root == tmp_path / RID and p.run_id == RID and p.runs_root == tmp_path
    rel = {name: getattr(p, name).relative_to(p.root).as_posix() for name in (
        "case_json", "mesh_dir", "mesh_xdmf", "groups_json", "progress_h5", "results_dir", "metrics_json",
        "fields_xdmf", "fields_pvd", "solver_log", "provenance_json", "attempts_json", "geometry_dir")}
    assert rel == {
        "case_json": "case.json", "mesh_dir": "mesh", "mesh_xdmf": "mesh/mesh.xdmf",
        "groups_json": "mesh/groups.json", "progress_h5": "progress.h5", "results_dir": "results",
        "metrics_json": "results/metrics.json", "fields_xdmf": "results/fields.xdmf",
        "fields_pvd": "results/fields.pvd", "solver_log": "solver.log",
        "provenance_json": "provenance.json", "attempts_json": "attempts.json", "geometry_dir": "geometry",
    }
    assert p.progress_attempt(1) == p.root / "progress.1.h5"
    assert p.progress_attempt(12).name == "progress.12.h5"
    assert not (tmp_path / RID).exists()  # naming touches nothing


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "1"])
def test_progress_attempt_numbers_start_at_one(tmp_path, bad):
    with pytest.raises(ValueError, match="attempt"):
        RunPaths.for_id(tmp_path, RID).progress_attempt(bad)


@pytest.mark.parametrize("bad", ["../x", "ABC", "abc", RID + "a", RID.upper(), "k3v9x0q2m7a/", "k3v9x0q2m7a.",
                                 "../k3v9x0q2m7", "", " k3v9x0q2m7a", "k3v9x0q2m7ab\n", None, 12])
def test_bad_run_ids_are_refused_with_a_clear_message(tmp_path, bad):
    assert not is_run_id(bad)
    with pytest.raises(RunIdError, match="12 characters of lower-case letters a-z and digits 0-9"):
        RunPaths.for_id(tmp_path, bad)
    with pytest.raises(RunIdError):
        validate_run_id(bad)
    assert list(tmp_path.iterdir()) == []


def test_from_dir_takes_the_id_from_the_directory_name(tmp_path, monkeypatch):
    p = RunPaths.from_dir(tmp_path / RID)
    assert p == RunPaths.for_id(tmp_path, RID)
    monkeypatch.chdir(tmp_path)
    assert RunPaths.from_dir(RID).root == tmp_path / RID  # made absolute
    with pytest.raises(RunIdError):
        RunPaths.from_dir(tmp_path / "not-a-run")
    with pytest.raises(RunIdError, match="not named after"):
        RunPaths(tmp_path / "aaaaaaaaaaaa", RID)


def test_run_paths_are_frozen(tmp_path):
    p = RunPaths.for_id(tmp_path, RID)
    with pytest.raises(AttributeError):
        p.run_id = "aaaaaaaaaaaa"  # type: ignore[misc]


def test_iter_runs_lists_only_run_directories(tmp_path):
    for name in (RID, "aaaaaaaaaaaa", ".prepare-xyz", "agent.pid"):
        (tmp_path / name).mkdir()
    (tmp_path / "bbbbbbbbbbbb").write_text("a file, not a run")
    assert [p.run_id for p in iter_runs(tmp_path)] == ["aaaaaaaaaaaa", RID]
    assert list(iter_runs(tmp_path / "missing")) == []


def test_write_json_atomic_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    with pytest.raises(ValueError):
        write_json_atomic(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]


@pytest.fixture
def run(tmp_path) -> RunPaths:
    paths = RunPaths.for_id(tmp_path, RID)
    paths.root.mkdir()
    write_json_atomic(paths.attempts_json, [])
    return paths


def test_attempts_round_trip(run):
    assert read_attempts(run) == []
    record_attempt_start(run, 1, pid=4242, start_time=1_700_000_000.5)
    record_attempt_end(run, 1, exit_code=4, end_time=1_700_000_100.0)
    record_attempt_start(run, 2, pid=4343, start_time=1_700_000_200.0, scheduler_job_id=12345)
    record_attempt_end(run, 2, exit_code=0)
    attempts = read_attempts(run)
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert attempts[0] == {"attempt": 1, "pid": 4242, "start_time": 1_700_000_000.5,
                           "start_utc": "2023-11-14T22:13:20+00:00", "scheduler_job_id": None,
                           "end_time": 1_700_000_100.0, "exit_code": 4}
    assert attempts[1]["scheduler_job_id"] == "12345" and attempts[1]["exit_code"] == 0
    assert attempts[1]["end_time"] > attempts[1]["start_time"]
    assert [f.name for f in run.root.iterdir()] == ["attempts.json"]  # no temp files left


def test_attempt_mistakes_are_refused(run):
    with pytest.raises(WeldSimError, match="no attempt 1"):
        record_attempt_end(run, 1, exit_code=0)
    record_attempt_start(run, 1, pid=os.getpid(), start_time=1e9)
    with pytest.raises(WeldSimError, match="next attempt is 2"):
        record_attempt_start(run, 1, pid=os.getpid(), start_time=1e9)
    with pytest.raises(ValueError):
        record_attempt_start(run, 0, pid=os.getpid(), start_time=1e9)
    with pytest.raises(ValueError):
        record_attempt_start(run, 2, pid=os.getpid(), start_time=float("nan"))
    record_attempt_end(run, 1, exit_code=3)
    with pytest.raises(WeldSimError, match="already ended with exit code 3"):
        record_attempt_end(run, 1, exit_code=0)
    assert len(read_attempts(run)) == 1


def test_read_attempts_of_a_directory_that_is_no_run(tmp_path):
    with pytest.raises(WeldSimError, match="prepared run"):
        read_attempts(RunPaths.for_id(tmp_path, RID))
    paths = RunPaths.for_id(tmp_path, RID)
    paths.root.mkdir()
    Path(paths.attempts_json).write_text('{"not": "a list"}')
    with pytest.raises(WeldSimError, match="list of attempt records"):
        read_attempts(paths)
