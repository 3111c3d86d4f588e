"""Cases service: CaseSpec validation with field paths, geometry versions, custom materials,
and the document a run gets."""

from __future__ import annotations

import pytest

from portal.models import GeometryVersion
from portal.services import cases, materials, projects
from portal.services.errors import Conflict, Invalid, NotFound
from portal.services.paths import project_dir

from .helpers import CUSTOM_PROPERTIES, counts, make_user, thermal_spec

MSH_HEADER = """$MeshFormat
4.1 0 8
$EndMeshFormat
$PhysicalNames
4
3 1 "horn"
2 2 "input_face"
2 3 "output_face"
2 4 "lateral"
$EndPhysicalNames
"""


@pytest.fixture
def owner(db_session):
    return make_user(db_session, "eng@example.com")


@pytest.fixture
def project(db_session, owner):
    return projects.create_project(db_session, owner, name="Horn", application_type="horn_design")


def test_a_valid_case_is_stored_as_written_with_its_name(db_session, owner, project, tmp_path):
    case = cases.create_case(db_session, owner, project.id, spec=thermal_spec(), name="thermal",
                             description="first try", storage_root=tmp_path)
    assert case.spec == {**thermal_spec(), "name": "thermal"}  # no defaults expanded
    assert cases.get_case(db_session, owner, project.id, case.id) == case
    named = cases.create_case(db_session, owner, project.id, spec=thermal_spec(name="from spec"), storage_root=tmp_path)
    assert named.name == "from spec"
    assert cases.list_cases(db_session, owner, project.id, search="SPEC").total == 1


def test_every_problem_comes_back_with_its_field_path(db_session, owner, project, tmp_path):
    spec = thermal_spec(boundary_conditions=[{"boundary": "inptu_face", "type": "temperature", "value": 300.0},
                                             {"boundary": "output_face", "type": "fixed"}],
                        materials={"horn": "titanium?"})
    before = counts(db_session)
    with pytest.raises(Invalid) as info:
        cases.create_case(db_session, owner, project.id, spec=spec, name="bad", storage_root=tmp_path)
    problems = dict(info.value.details)
    assert "did you mean 'input_face'" in problems["spec.boundary_conditions[0].boundary"]
    assert "structural condition" in problems["spec.boundary_conditions[1].type"]
    assert "unknown material" in problems["spec.materials.horn"]
    assert info.value.field in problems
    with pytest.raises(Invalid) as info:
        cases.create_case(db_session, owner, project.id, spec=thermal_spec(solver={"backend": "abaqus"}),
                          name="bad", storage_root=tmp_path)
    assert info.value.field == "spec.solver.backend"
    with pytest.raises(Invalid) as info:
        cases.create_case(db_session, owner, project.id, spec=thermal_spec(colour="red"), name="x",
                          storage_root=tmp_path)
    assert info.value.field == "spec.colour" and "unknown option" in info.value.message
    assert counts(db_session) == before


def test_names_must_agree_and_be_unique(db_session, owner, project, tmp_path):
    with pytest.raises(Invalid) as info:
        cases.create_case(db_session, owner, project.id, spec=thermal_spec(), storage_root=tmp_path)
    assert info.value.field == "name"
    with pytest.raises(Invalid) as info:
        cases.create_case(db_session, owner, project.id, spec=thermal_spec(name="a"), name="b", storage_root=tmp_path)
    assert info.value.field == "spec.name"
    with pytest.raises(Invalid) as info:
        cases.create_case(db_session, owner, project.id, spec=thermal_spec(name="../../x"), storage_root=tmp_path)
    assert info.value.field == "spec.name"
    cases.create_case(db_session, owner, project.id, spec=thermal_spec(), name="thermal", storage_root=tmp_path)
    with pytest.raises(Conflict):
        cases.create_case(db_session, owner, project.id, spec=thermal_spec(), name="thermal", storage_root=tmp_path)
    with pytest.raises(Invalid) as info:
        cases.create_case(db_session, owner, project.id, spec=["not", "a", "case"], name="x", storage_root=tmp_path)
    assert info.value.field == "spec"


def test_a_spec_cannot_name_a_mesh_file_itself(db_session, owner, project, tmp_path):
    (tmp_path / "secret.msh").write_text(MSH_HEADER)
    for path in ("/etc/passwd.msh", "../../secret.msh", str(tmp_path / "secret.msh")):
        with pytest.raises(Invalid) as info:
            cases.create_case(db_session, owner, project.id, name="x", storage_root=tmp_path,
                              spec=thermal_spec(geometry={"kind": "mesh_file", "path": path}))
        assert info.value.field == "spec.geometry.kind"


def test_custom_materials_of_the_owner_validate_and_are_inlined_for_a_run(db_session, owner, project, tmp_path):
    materials.create_custom(db_session, owner, material_id="ti_mine", properties=CUSTOM_PROPERTIES, source="sheet")
    case = cases.create_case(db_session, owner, project.id, name="thermal", storage_root=tmp_path,
                             spec=thermal_spec(materials={"horn": "ti_mine"}))
    assert case.spec["materials"] == {"horn": "ti_mine"} and "custom_materials" not in case.spec
    document = cases.case_spec_for_run(db_session, case, storage_root=tmp_path).to_json_dict()
    assert document["custom_materials"]["ti_mine"]["density_kg_m3"] == 4430.0
    assert document["materials"] == {"horn": "ti_mine"} and document["name"] == "thermal"
    # another user's custom material of the same id is not theirs to use
    other = make_user(db_session, "other@example.com")
    theirs = projects.create_project(db_session, other, name="Horn", application_type="horn_design")
    with pytest.raises(Invalid) as info:
        cases.create_case(db_session, other, theirs.id, name="x", storage_root=tmp_path,
                          spec=thermal_spec(materials={"horn": "ti_mine"}))
    assert info.value.field == "spec.materials.horn"


def test_geometry_from_a_parametric_version(db_session, owner, project, tmp_path):
    version = GeometryVersion(project_id=project.id, version=1, kind="parametric",
                              params={"kind": "cylinder", "length_m": 0.12, "diameter_m": 0.03})
    db_session.add(version)
    db_session.commit()
    spec = thermal_spec()
    del spec["geometry"]
    case = cases.create_case(db_session, owner, project.id, spec=spec, name="v1", geometry_version_id=version.id,
                             storage_root=tmp_path)
    assert case.spec["geometry"]["length_m"] == 0.12 and case.geometry_version_id == version.id
    with pytest.raises(Invalid) as info:  # a different geometry alongside the version
        cases.create_case(db_session, owner, project.id, spec=thermal_spec(), name="v1b",
                          geometry_version_id=version.id, storage_root=tmp_path)
    assert info.value.field == "spec.geometry"
    longer = GeometryVersion(project_id=project.id, version=2, kind="parametric",
                             params={"kind": "cylinder", "length_m": 0.13, "diameter_m": 0.03})
    db_session.add(longer)
    db_session.commit()
    cases.update_case(db_session, owner, project.id, case.id, {"geometry_version_id": longer.id},
                      storage_root=tmp_path)
    assert case.geometry_version_id == longer.id and case.spec["geometry"]["length_m"] == 0.13
    cases.update_case(db_session, owner, project.id, case.id, {"geometry_version_id": None}, storage_root=tmp_path)
    assert case.geometry_version_id is None and case.spec["geometry"]["length_m"] == 0.13


def test_geometry_from_an_uploaded_mesh_under_the_storage_root(db_session, owner, project, tmp_path):
    mesh = project_dir(tmp_path, project.id) / "geometry" / "horn.msh"
    mesh.parent.mkdir(parents=True)
    mesh.write_text(MSH_HEADER)
    version = GeometryVersion(project_id=project.id, version=1, kind="uploaded",
                              file_path=str(mesh.relative_to(tmp_path)))
    db_session.add(version)
    db_session.commit()
    spec = thermal_spec()
    del spec["geometry"]
    case = cases.create_case(db_session, owner, project.id, spec=spec, name="mesh", geometry_version_id=version.id,
                             storage_root=tmp_path)
    assert case.spec["geometry"] == {"kind": "mesh_file", "path": f"projects/{project.id}/geometry/horn.msh"}
    run_spec = cases.case_spec_for_run(db_session, case, storage_root=tmp_path)
    assert run_spec.geometry.path == str(mesh.resolve())


def test_a_geometry_version_of_another_project_is_refused(db_session, owner, project, tmp_path):
    other = projects.create_project(db_session, owner, name="Other", application_type="horn_design")
    version = GeometryVersion(project_id=other.id, version=1, kind="parametric",
                              params={"kind": "cylinder", "length_m": 0.12, "diameter_m": 0.03})
    db_session.add(version)
    db_session.commit()
    with pytest.raises(Invalid) as info:
        cases.create_case(db_session, owner, project.id, spec=thermal_spec(), name="x",
                          geometry_version_id=version.id, storage_root=tmp_path)
    assert info.value.field == "geometry_version_id"


def test_update_revalidates_and_renames_spec_and_case_together(db_session, owner, project, tmp_path):
    case = cases.create_case(db_session, owner, project.id, spec=thermal_spec(), name="thermal", storage_root=tmp_path)
    cases.update_case(db_session, owner, project.id, case.id, {"name": "thermal 2"}, storage_root=tmp_path)
    assert case.name == case.spec["name"] == "thermal 2"
    with pytest.raises(Invalid) as info:
        cases.update_case(db_session, owner, project.id, case.id,
                          {"spec": thermal_spec(analysis="modal")}, storage_root=tmp_path)
    assert info.value.field.startswith("spec.")
    db_session.refresh(case)
    assert case.spec["analysis"] == "thermal_steady"
    cases.update_case(db_session, owner, project.id, case.id, {"description": "new"}, storage_root=tmp_path)
    assert case.description == "new" and case.name == "thermal 2"


def test_cases_are_private_to_the_project(db_session, owner, project, tmp_path):
    case = cases.create_case(db_session, owner, project.id, spec=thermal_spec(), name="thermal", storage_root=tmp_path)
    other_project = projects.create_project(db_session, owner, name="Other", application_type="horn_design")
    with pytest.raises(NotFound):
        cases.get_case(db_session, owner, other_project.id, case.id)  # right case, wrong project
    stranger = make_user(db_session, "stranger@example.com")
    with pytest.raises(NotFound):
        cases.get_case(db_session, stranger, project.id, case.id)
    with pytest.raises(NotFound):
        cases.delete_case(db_session, stranger, project.id, case.id, runs_root=tmp_path)
    cases.delete_case(db_session, owner, project.id, case.id, runs_root=tmp_path)
    assert cases.list_cases(db_session, owner, project.id).total == 0
