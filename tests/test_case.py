"""CaseSpec validation: the examples load, and bad input names the field and the reason."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from weldsim_hpc.case import CaseSpec
from weldsim_hpc.case_io import apply_preset, load_case, parse_case, read_case_data
from weldsim_hpc.errors import CaseValidationError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.toml"))
HORN = EXAMPLES / "horn_20khz_stepped_modal.toml"
STACK = EXAMPLES / "tab_weld_cu_al_transient.toml"
COUPLED = EXAMPLES / "horn_coupled.toml"


def horn_data() -> dict:
    return apply_preset(read_case_data(HORN), None)


def problems_of(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(CaseValidationError) as info:
        parse_case(data, base_dir=EXAMPLES)
    return info.value.errors


def test_four_examples_cover_the_required_analyses():
    analyses = {load_case(p).analysis for p in EXAMPLE_FILES}
    assert {"modal", "harmonic", "thermal_transient", "coupled_thermo_structural"} <= analyses
    assert len(EXAMPLE_FILES) >= 4


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_examples_validate_with_and_without_ci_preset(path):
    full = load_case(path)
    ci = load_case(path, preset="ci")
    assert isinstance(full, CaseSpec) and isinstance(ci, CaseSpec)
    assert full.name == ci.name


def test_stepped_horn_example_is_ti6al4v_at_20khz():
    case = load_case(HORN)
    assert case.geometry.kind == "stepped"
    assert case.materials["horn"] == "ti6al4v"
    assert case.target_frequency_Hz == 20000.0


def test_element_order_defaults_by_analysis():
    assert load_case(HORN).effective_element_order == 2
    assert load_case(STACK).effective_element_order == 1
    assert load_case(COUPLED).effective_element_order == 2
    data = horn_data()
    data["element_order"] = 1
    assert parse_case(data, EXAMPLES).effective_element_order == 1


def test_preset_merges_over_base_and_unknown_preset_is_named():
    base = load_case(HORN)
    ci = load_case(HORN, preset="ci")
    assert base.mesh.size_m is None
    assert ci.mesh.size_m == pytest.approx(0.0075)
    with pytest.raises(CaseValidationError, match="unknown preset 'fine'.*ci"):
        load_case(HORN, preset="fine")


def test_unknown_material_suggests_the_close_id():
    data = horn_data()
    data["materials"]["horn"] = "Ti64x"
    assert ("materials.horn", "unknown material 'Ti64x' (did you mean 'ti6al4v'?)") in problems_of(data)


def test_inline_custom_material_is_accepted_and_bad_one_named():
    data = horn_data()
    data["materials"]["horn"] = {
        "name": "my titanium", "density_kg_m3": 4500.0, "youngs_modulus_Pa": 110e9,
        "poisson_ratio": 0.34, "conductivity_W_mK": 7.0, "specific_heat_J_kgK": 530.0,
        "expansion_1_K": 9e-6, "yield_strength_Pa": 900e6, "fatigue_strength_Pa": 500e6,
        "fatigue_cycles": 1e7, "loss_factor": 2e-4, "solidus_K": 1870.0,
    }
    parse_case(data, EXAMPLES)
    data["materials"]["horn"]["poisson_ratio"] = 0.6
    paths = [p for p, _ in problems_of(data)]
    assert "materials.horn" in paths


def test_negative_length_names_the_geometry_field():
    data = horn_data()
    data["geometry"]["length_input_m"] = -0.01
    problems = problems_of(data)
    assert any(p == "geometry.length_input_m" for p, _ in problems), problems


def test_fillet_larger_than_step_is_refused():
    data = horn_data()
    data["geometry"]["fillet_radius_m"] = 0.015  # the step is (40-20)/2 = 10 mm
    problems = problems_of(data)
    assert any(p.startswith("geometry") and "fillet" in m for p, m in problems), problems


def test_unknown_boundary_names_the_index_and_suggests():
    data = copy.deepcopy(apply_preset(read_case_data(COUPLED), None))
    data["boundary_conditions"][3]["boundary"] = "outptu_face"
    path, message = problems_of(data)[0]
    assert path == "boundary_conditions[3].boundary"
    assert "unknown boundary 'outptu_face'" in message and "output_face" in message


def test_unsafe_expression_is_refused_at_its_field():
    data = copy.deepcopy(apply_preset(read_case_data(COUPLED), None))
    data["boundary_conditions"][2]["value"] = "__import__('os').system('id')"
    problems = problems_of(data)
    assert problems[0][0] == "boundary_conditions[2].value"
    assert "not allowed" in problems[0][1]


def test_boolean_value_is_not_a_number():
    data = copy.deepcopy(apply_preset(read_case_data(COUPLED), None))
    data["boundary_conditions"][3]["value"] = True
    assert problems_of(data)[0][0] == "boundary_conditions[3].value"


def test_unknown_option_and_unknown_bc_type():
    data = horn_data()
    data["solver"]["tolerance"] = 1e-9
    data["boundary_conditions"] = [{"boundary": "input_face", "type": "glue"}]
    problems = dict(problems_of(data))
    assert "unknown option" in problems["solver.tolerance"]
    assert "unknown type 'glue'" in problems["boundary_conditions[0]"]


def test_every_problem_is_reported_at_once():
    data = copy.deepcopy(apply_preset(read_case_data(STACK), None))
    del data["time"]
    data["materials"]["tab"] = "unobtainium"
    data["boundary_conditions"][1]["boundary"] = "floor"
    paths = {p for p, _ in problems_of(data)}
    assert {"time", "materials.tab", "boundary_conditions[1].boundary"} <= paths


def test_structural_condition_in_thermal_analysis_is_refused():
    data = copy.deepcopy(apply_preset(read_case_data(STACK), None))
    data["boundary_conditions"].append({"boundary": "anvil_base", "type": "fixed"})
    problems = problems_of(data)
    assert problems[0][0] == "boundary_conditions[3].type" and "structural" in problems[0][1]


def test_material_missing_for_a_volume():
    data = copy.deepcopy(apply_preset(read_case_data(STACK), None))
    del data["materials"]["horn_tip"]
    assert ("materials", "no material for volume 'horn_tip'") in problems_of(data)


def test_weld_heat_models_are_exclusive():
    data = copy.deepcopy(apply_preset(read_case_data(STACK), None))
    data["weld"].update(pressure_Pa=10e6, slip_amplitude_0pk_m=15e-6, friction_coefficient=0.3)
    path, message = problems_of(data)[0]
    assert path == "weld" and "not both" in message


def test_probe_outside_the_geometry():
    data = horn_data()
    data["probes"][0]["point"] = [0.0, 0.0, 0.5]
    assert problems_of(data)[0][0] == "probes[0].point"


def test_mesh_above_cell_limit_names_the_estimate():
    data = horn_data()
    data["mesh"] = {"size_m": 0.0004}
    path, message = problems_of(data)[0]
    assert path == "mesh"
    assert "estimated" in message and "limit" in message


def test_cell_limit_is_configurable():
    data = horn_data()
    data["mesh"] = {"size_m": 0.004, "max_cells": 1000}
    path, message = problems_of(data)[0]
    assert path == "mesh" and "1000" in message.replace(",", "")


def test_transient_time_step_larger_than_end():
    data = copy.deepcopy(apply_preset(read_case_data(STACK), None))
    data["time"]["dt_s"] = 2.0
    path, message = problems_of(data)[0]
    assert path == "time" and "dt_s" in message


def test_json_case_loads_like_toml(tmp_path):
    data = apply_preset(read_case_data(HORN), None)
    path = tmp_path / "horn.json"
    path.write_text(json.dumps(data))
    assert load_case(path) == load_case(HORN)


def test_malformed_files_give_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("analysis = [unclosed\n")
    with pytest.raises(CaseValidationError, match="bad.toml is not valid TOML"):
        load_case(bad)
    with pytest.raises(CaseValidationError, match="must end in .toml or .json"):
        load_case(tmp_path / "case.yaml")


def test_mesh_file_geometry_path_is_checked(tmp_path):
    data = horn_data()
    data["geometry"] = {"kind": "mesh_file", "path": "missing.msh"}
    path, message = problems_of(data)[0]
    assert path == "geometry.path" and "file not found" in message


def test_case_round_trips_through_json():
    case = load_case(COUPLED)
    again = CaseSpec.model_validate(json.loads(json.dumps(case.to_json_dict())))
    assert again == case


def test_json_schema_lists_the_sections():
    schema = CaseSpec.model_json_schema()
    for key in ("analysis", "geometry", "materials", "boundary_conditions", "solver", "weld", "time"):
        assert key in schema["properties"]


def test_individual_foils_take_the_foil_stack_material():
    data = copy.deepcopy(apply_preset(read_case_data(STACK), None))
    data["geometry"].update(individual_foils=True, n_foils=3, foil_thickness_m=0.1e-3)
    case = parse_case(data, EXAMPLES)
    assert case.geometry.groups()["foil_03"] == 3
    del data["materials"]["foil_stack"]
    problems = problems_of(data)
    assert ("materials", "no material for volume 'foil_01'") in problems
