"""Materials service: the built-in library, custom materials validated by weldsim_hpc's
Material model, and their inlining into case documents."""

from __future__ import annotations

import pytest

from portal.services import cases, materials, projects
from portal.services.errors import Conflict, Invalid, NotFound
from weldsim_hpc.case_io import parse_case

from .helpers import CUSTOM_PROPERTIES, counts, make_user, thermal_spec


def test_builtins_are_the_weldsim_library():
    ids = [m.id for m in materials.builtin_materials()]
    assert "ti6al4v" in ids and "cu_c110" in ids
    assert materials.get_builtin("ti6al4v").density_kg_m3 == pytest.approx(4430.0)
    with pytest.raises(NotFound):
        materials.get_builtin("unobtainium")


def test_a_custom_material_is_stored_as_validated_si_values(db_session):
    user = make_user(db_session, "eng@example.com")
    row = materials.create_custom(db_session, user, material_id="ti_mine", name="Ti-6Al-4V (supplier B)",
                                  properties={**CUSTOM_PROPERTIES, "fatigue_cycles": 1e7},
                                  source="supplier B sheet 2026")
    assert row.properties["density_kg_m3"] == 4430.0
    assert row.properties["fatigue_note"] == "10^7 value: no 10^9 value given"  # weldsim's flag, filled in
    assert [r.material_id for r in materials.list_custom(db_session, user)] == ["ti_mine"]


@pytest.mark.parametrize("change, field", [
    ({"poisson_ratio": 0.7}, "properties.poisson_ratio"),
    ({"density_kg_m3": -1.0}, "properties.density_kg_m3"),
    ({"density_kg_m3": "heavy"}, "properties.density_kg_m3"),
    ({"colour": "grey"}, "properties.colour"),
])
def test_invalid_properties_name_the_property(db_session, change, field):
    user = make_user(db_session, "eng@example.com")
    before = counts(db_session)
    with pytest.raises(Invalid) as info:
        materials.create_custom(db_session, user, material_id="bad", properties={**CUSTOM_PROPERTIES, **change})
    assert info.value.field == field
    assert counts(db_session) == before


def test_missing_properties_are_listed(db_session):
    user = make_user(db_session, "eng@example.com")
    with pytest.raises(Invalid) as info:
        materials.create_custom(db_session, user, material_id="bad", properties={"density_kg_m3": 8900.0})
    fields = {f for f, _ in info.value.details}
    assert "properties.youngs_modulus_Pa" in fields and "properties.solidus_K" in fields
    assert dict(info.value.details)["properties.youngs_modulus_Pa"] == "missing"


def test_ids_may_not_shadow_builtins_repeat_or_look_like_paths(db_session):
    user = make_user(db_session, "eng@example.com")
    materials.create_custom(db_session, user, material_id="ti_mine", properties=CUSTOM_PROPERTIES)
    with pytest.raises(Conflict, match="shadows the built-in material 'ti6al4v'"):
        materials.create_custom(db_session, user, material_id="TI6AL4V", properties=CUSTOM_PROPERTIES)
    with pytest.raises(Conflict, match="already"):
        materials.create_custom(db_session, user, material_id="ti_mine", properties=CUSTOM_PROPERTIES)
    for bad in ("../x", "a/b", "", "_x", "x" * 65):
        with pytest.raises(Invalid) as info:
            materials.create_custom(db_session, user, material_id=bad, properties=CUSTOM_PROPERTIES)
        assert info.value.field == "material_id"
    other = make_user(db_session, "other@example.com")  # ids are per owner
    materials.create_custom(db_session, other, material_id="ti_mine", properties=CUSTOM_PROPERTIES)


def test_update_merges_properties_and_keeps_the_id(db_session):
    user = make_user(db_session, "eng@example.com")
    row = materials.create_custom(db_session, user, material_id="ti_mine", properties=CUSTOM_PROPERTIES)
    materials.update_custom(db_session, user, row.id, {"properties": {"density_kg_m3": 4500.0}, "name": "Ti B"})
    assert row.properties["density_kg_m3"] == 4500.0 and row.properties["solidus_K"] == 1877.15
    assert row.name == "Ti B"
    with pytest.raises(Invalid) as info:
        materials.update_custom(db_session, user, row.id, {"material_id": "renamed"})
    assert info.value.field == "material_id"
    with pytest.raises(Invalid):
        materials.update_custom(db_session, user, row.id, {"properties": {"loss_factor": 0.5}})
    db_session.refresh(row)
    assert row.properties["loss_factor"] == 5e-5


def test_other_users_custom_materials_are_not_found_admin_sees_them(db_session):
    alice = make_user(db_session, "alice@example.com")
    bob = make_user(db_session, "bob@example.com")
    boss = make_user(db_session, "boss@example.com", admin=True)
    row = materials.create_custom(db_session, alice, material_id="ti_mine", properties=CUSTOM_PROPERTIES)
    for call in (lambda: materials.get_custom(db_session, bob, row.id),
                 lambda: materials.update_custom(db_session, bob, row.id, {"name": "mine now"}),
                 lambda: materials.delete_custom(db_session, bob, row.id)):
        with pytest.raises(NotFound):
            call()
    assert materials.list_custom(db_session, bob, all_users=True) == []  # not an admin: own only
    assert materials.get_custom(db_session, boss, row.id) == row
    assert [r.id for r in materials.list_custom(db_session, boss, all_users=True)] == [row.id]
    assert materials.list_custom(db_session, boss) == []


def test_a_material_in_use_cannot_be_deleted(db_session, tmp_path):
    user = make_user(db_session, "eng@example.com")
    row = materials.create_custom(db_session, user, material_id="ti_mine", properties=CUSTOM_PROPERTIES)
    project = projects.create_project(db_session, user, name="Horn", application_type="horn_design")
    case = cases.create_case(db_session, user, project.id, name="thermal", storage_root=tmp_path,
                             spec=thermal_spec(materials={"horn": "ti_mine"}))
    with pytest.raises(Conflict, match="used by 1 case: 'thermal'"):
        materials.delete_custom(db_session, user, row.id)
    cases.update_case(db_session, user, project.id, case.id, {"spec": thermal_spec()}, storage_root=tmp_path)
    materials.delete_custom(db_session, user, row.id)
    assert materials.list_custom(db_session, user) == []


def test_inlining_puts_the_values_into_the_document(db_session):
    user = make_user(db_session, "eng@example.com")
    materials.create_custom(db_session, user, material_id="ti_mine", name="Ti B", properties=CUSTOM_PROPERTIES,
                            source="sheet 7")
    spec = thermal_spec(materials={"horn": "ti_mine"})
    doc = materials.inline_custom_materials(spec, materials.custom_library(db_session, user.id))
    assert spec["materials"] == {"horn": "ti_mine"} and "custom_materials" not in spec  # a copy
    entry = doc["custom_materials"]["ti_mine"]
    assert entry["name"] == "Ti B" and entry["density_kg_m3"] == 4430.0
    assert entry["sources"]["density_kg_m3"] == "sheet 7"
    case = parse_case({**doc, "name": "x"})
    assert case.custom_materials["ti_mine"]["youngs_modulus_Pa"] == 113.8e9
    # a case's own definition wins over the library
    own = thermal_spec(materials={"horn": "ti_mine"}, custom_materials={"ti_mine": {"density_kg_m3": 1.0}})
    assert materials.inline_custom_materials(own, materials.custom_library(db_session, user.id)) == own
