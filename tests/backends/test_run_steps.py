"""run_steps.steps_reached: n_time_steps counts the whole simulation, also after a resume."""

from pathlib import Path

import pytest

from weldsim_hpc.backends.run_steps import steps_reached
from weldsim_hpc.case_io import load_case
from weldsim_hpc.physics.thermal import time_grid

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tab_weld_cu_al_transient.toml"


@pytest.fixture(scope="module")
def case():
    return load_case(EXAMPLE, "ci")


def test_the_last_time_is_the_number_of_steps_of_the_grid_with_the_weld_end(case):
    grid = time_grid(case.time.end_s, case.time.dt_s, (case.weld.weld_time_s,))
    assert steps_reached(case, case.time.end_s) == len(grid) - 1
    assert steps_reached(case, 0.0) == 0


def test_every_grid_time_maps_to_its_own_index(case):
    grid = time_grid(case.time.end_s, case.time.dt_s, (case.weld.weld_time_s,))
    assert [steps_reached(case, t) for t in grid] == list(range(len(grid)))


def test_without_weld_heating_the_weld_end_is_no_grid_point(case):
    bcs = [bc for bc in case.boundary_conditions if bc.type != "weld_interface_heating"]
    plain = case.model_copy(update={"boundary_conditions": bcs,
                                    "time": case.time.model_copy(update={"end_s": 1.0, "dt_s": 0.5})})
    assert steps_reached(plain, 1.0) == 2  # 0.5, 1.0; with the weld end: 0.3, 0.65, 1.0
    assert steps_reached(case.model_copy(update={"time": plain.time}), 1.0) == 3
