"""The executor base: what an attempt's exit code means, task keys, and the logs tail."""

from __future__ import annotations

import pytest

from weldsim_hpc.executors.base import EXIT_OF_STATUS, outcome_of_exit, tail_logs, task_key
from weldsim_hpc.launch import LAUNCHER_LOG
from weldsim_hpc.run_paths import RunPaths
from weldsim_hpc.states import RunState


@pytest.mark.parametrize("code, state, reason", [
    (0, RunState.COMPLETED, None),
    (2, RunState.FAILED, "invalid case (exit code 2); see solver.log"),
    (3, RunState.FAILED, "solver failed (exit code 3); see solver.log"),
    (4, RunState.INTERRUPTED, "interrupted after a checkpoint; resume with `weldsim submit --resume`"),
    (137, RunState.FAILED, "killed by SIGKILL (exit code 137)"),
    (143, RunState.FAILED, "killed by SIGTERM (exit code 143)"),
    (1, RunState.FAILED, f"exit code 1; see solver.log and {LAUNCHER_LOG}"),
    (128 + 99, RunState.FAILED, "killed by signal 99 (exit code 227)"),
])
def test_exit_codes_map_to_states(code, state, reason):
    outcome = outcome_of_exit(code)
    assert (outcome.state, outcome.reason, outcome.resubmit) == (state, reason, False)


@pytest.mark.parametrize("code", [0, 1, 2, 3, 4, 137, 143])
def test_a_requested_cancel_wins_over_any_exit_code(code):
    outcome = outcome_of_exit(code, cancel_requested=True)
    assert (outcome.state, outcome.reason, outcome.resubmit) == (RunState.CANCELLED, "cancelled on request", False)


def test_no_exit_code_asks_for_a_resubmission():
    """Only a lost attempt (no exit seen, no final status) is resubmitted — not a failure."""
    assert not any(outcome_of_exit(c).resubmit for c in range(0, 256))


def test_final_progress_statuses_stand_for_exit_codes():
    assert EXIT_OF_STATUS == {RunState.COMPLETED: 0, RunState.INTERRUPTED: 4, RunState.FAILED: 3,
                              RunState.CANCELLED: 4}
    for state, code in EXIT_OF_STATUS.items():
        if state is not RunState.CANCELLED:  # a cancel is told by the record, not the exit code
            assert outcome_of_exit(code).state is state


def test_task_key_is_unique_per_attempt():
    assert task_key("abc123def456", 1) == "run-abc123def456-a1"
    assert len({task_key("abc123def456", n) for n in range(1, 5)} | {task_key("abc123def457", 1)}) == 5


def test_logs_tail_the_solver_and_launcher_logs(tmp_path):
    paths = RunPaths.for_id(tmp_path, "abc123def456")
    paths.root.mkdir()
    assert tail_logs(paths) == "run abc123def456: no logs yet"
    paths.solver_log.write_text("".join(f"solver line {i}\n" for i in range(500)))
    (paths.root / LAUNCHER_LOG).write_text("== attempt 1: mpirun ...\n")
    text = tail_logs(paths, lines=3)
    assert text == ("== solver.log ==\nsolver line 497\nsolver line 498\nsolver line 499\n"
                    f"== {LAUNCHER_LOG} ==\n== attempt 1: mpirun ...")
