"""Material library: coverage, sources, unit sanity, lookup messages, custom materials."""

from __future__ import annotations

import json
import math

import pytest

from weldsim_hpc.errors import MaterialError
from weldsim_hpc.materials import (
    GIGACYCLES,
    MATERIALS_TABLE_COLUMNS,
    PROPERTY_FIELDS,
    Material,
    builtin_materials,
    get_material,
    lame_parameters,
    load_material_file,
    material_detail_rows,
    materials_table_rows,
    resolve_material,
)

FAMILIES = {"ti6al4v", "al7075_t6", "d2", "m2", "cpm_rex_m4", "cu_c110", "al1050", "al1060", "al1100", "ni200", "ss304"}

# A plausible custom material in SI (roughly AA 6061-T6); pinned here, not taken from the library.
AL6061 = {
    "name": "Al 6061-T6 (test)", "density_kg_m3": 2700.0, "youngs_modulus_Pa": 68.9e9, "poisson_ratio": 0.33,
    "conductivity_W_mK": 167.0, "specific_heat_J_kgK": 896.0, "expansion_1_K": 23.6e-6,
    "yield_strength_Pa": 276e6, "fatigue_strength_Pa": 96.5e6, "fatigue_cycles": 5e8,
    "loss_factor": 1e-4, "solidus_K": 855.0,
}


def c0(density_kg_m3: float, youngs_modulus_Pa: float) -> float:
    return math.sqrt(youngs_modulus_Pa / density_kg_m3)


# --- built-in library --------------------------------------------------------------------

def test_builtins_cover_every_family():
    materials = builtin_materials()
    assert len(materials) >= 10
    assert FAMILIES <= set(materials), FAMILIES - set(materials)
    for mat_id, material in materials.items():
        assert material.id == mat_id


@pytest.mark.parametrize("mat_id", sorted(FAMILIES))
def test_every_property_has_a_value_and_a_source(mat_id):
    material = builtin_materials()[mat_id]
    for field in PROPERTY_FIELDS:
        value = getattr(material, field)
        assert math.isfinite(value) and value > 0, field
        source = material.sources.get(field, "")
        assert isinstance(source, str) and len(source.strip()) >= 8, f"{mat_id}.{field} has no source"


@pytest.mark.parametrize("mat_id", sorted(FAMILIES))
def test_bar_sound_speed_is_that_of_a_metal(mat_id):
    """2000-6500 m/s catches GPa-for-Pa (÷3e4) and g/cm³-for-kg/m³ (×32) slips."""
    material = builtin_materials()[mat_id]
    assert 2000 <= material.bar_sound_speed_m_s <= 6500
    assert material.bar_sound_speed_m_s == pytest.approx(c0(material.density_kg_m3, material.youngs_modulus_Pa))


def test_sound_speed_window_rejects_unit_slips():
    """The window above is not a tautology: the usual slips land far outside it."""
    ti = get_material("ti6al4v")
    gpa_slip = c0(ti.density_kg_m3, ti.youngs_modulus_Pa / 1e9)
    gcm3_slip = c0(ti.density_kg_m3 / 1000, ti.youngs_modulus_Pa)
    assert not 2000 <= gpa_slip <= 6500
    assert not 2000 <= gcm3_slip <= 6500


def test_ti6al4v_bar_speed_matches_domain_notes():
    assert get_material("ti6al4v").bar_sound_speed_m_s == pytest.approx(5068.0, rel=0.01)


def test_solidus_is_in_kelvin():
    """Every solidus lies between aluminium's eutectic (~750 K) and titanium's (~1900 K)."""
    for material in builtin_materials().values():
        assert 700 <= material.solidus_K <= 1950, material.id
    assert get_material("cu_c110").solidus_K == pytest.approx(1065 + 273.15)


def test_fatigue_flag_wherever_life_is_not_gigacycle():
    flagged = 0
    for material in builtin_materials().values():
        if material.fatigue_cycles != GIGACYCLES:
            assert material.fatigue_note and material.fatigue_note.strip(), material.id
            flagged += 1
    assert flagged >= 1
    ti = get_material("ti6al4v")
    assert ti.fatigue_cycles == 1e7 and "10^7" in ti.fatigue_note


def test_estimates_are_labelled_as_such():
    """A value that is not published must say so where an engineer will read it."""
    m2 = get_material("m2")
    assert m2.sources["fatigue_strength_Pa"].startswith("ESTIMATE")
    assert "ESTIMATE" in m2.fatigue_note


def test_builtin_materials_returns_a_fresh_dict():
    first = builtin_materials()
    first.pop("ti6al4v")
    assert "ti6al4v" in builtin_materials()


# --- derived quantities ------------------------------------------------------------------

def test_elastic_relations():
    lam, mu = lame_parameters(200e9, 0.3)
    assert lam == pytest.approx(115.3846e9, rel=1e-5)
    assert mu == pytest.approx(76.9231e9, rel=1e-5)
    ti = get_material("ti6al4v")
    assert ti.shear_modulus_Pa == pytest.approx(113.8e9 / (2 * 1.342))
    assert ti.lame_parameters()[1] == pytest.approx(ti.shear_modulus_Pa)
    assert ti.shear_speed_m_s == pytest.approx(math.sqrt(ti.shear_modulus_Pa / 4430.0))
    assert ti.shear_speed_m_s < ti.bar_sound_speed_m_s


def test_material_is_frozen_and_hashable():
    ti = get_material("ti6al4v")
    with pytest.raises(Exception):
        ti.density_kg_m3 = 1.0
    assert {ti: 1}[get_material("ti6al4v")] == 1


# --- lookup messages ---------------------------------------------------------------------

@pytest.mark.parametrize("query", ["Ti64x", "Ti6Al4V", "Ti-6Al-4V", "TI6AL4V"])
def test_unknown_id_suggests_the_closest(query):
    with pytest.raises(MaterialError) as info:
        get_material(query)
    assert str(info.value) == f"unknown material '{query}' (did you mean 'ti6al4v'?)"


def test_unknown_id_without_close_match_lists_the_known_ones():
    with pytest.raises(MaterialError) as info:
        get_material("foo")
    known = ", ".join(builtin_materials())
    assert str(info.value) == f"unknown material 'foo' (known: {known})"
    assert str(info.value).startswith("unknown material 'foo' (known: ti6al4v, ")


def test_suggestions_use_aliases():
    with pytest.raises(MaterialError, match=r"did you mean 'al7075_t6'\?"):
        get_material("Al 7075-T6")
    with pytest.raises(MaterialError, match=r"did you mean 'cu_c110'\?"):
        get_material("C11000")


# --- custom materials --------------------------------------------------------------------

def test_inline_material_with_derived_id():
    material = resolve_material(dict(AL6061))
    assert material.id == "al_6061_t6_test"
    assert material.sources == {}
    assert material.bar_sound_speed_m_s == pytest.approx(c0(2700.0, 68.9e9))
    assert material.fatigue_note and "5×10^8" in material.fatigue_note  # flag filled in


def test_inline_material_accepts_value_source_tables():
    props = {**AL6061, "id": "al6061", "density_kg_m3": {"value": 2700.0, "source": "handbook"}}
    material = resolve_material(props)
    assert material.density_kg_m3 == 2700.0 and material.sources == {"density_kg_m3": "handbook"}


def test_gigacycle_custom_material_gets_no_flag():
    material = resolve_material({**AL6061, "id": "x", "fatigue_cycles": 1e9})
    assert material.fatigue_note is None


def test_resolve_by_id_uses_custom_then_builtin():
    custom = {"al6061": resolve_material({**AL6061, "id": "al6061"})}
    assert resolve_material("al6061", custom) is custom["al6061"]
    assert resolve_material("ti6al4v", custom).id == "ti6al4v"
    with pytest.raises(MaterialError, match="did you mean 'al6061'"):
        resolve_material("al6016", custom)


def test_custom_materials_from_toml_file(tmp_path):
    path = tmp_path / "mine.toml"
    body = "".join(f"{k} = {v!r}\n" for k, v in AL6061.items() if k != "name")
    path.write_text(f'[materials.al6061]\nname = "Al 6061-T6"\n{body}', encoding="utf-8")
    materials = load_material_file(path)
    assert list(materials) == ["al6061"]
    assert materials["al6061"].name == "Al 6061-T6"
    assert get_material("al6061", materials).youngs_modulus_Pa == 68.9e9


def test_custom_materials_from_json_file_with_sources(tmp_path):
    entry = {k: v for k, v in AL6061.items() if k not in ("fatigue_strength_Pa", "fatigue_cycles")}
    entry["fatigue_strength_Pa"] = {"value": 96.5e6, "cycles": 5e8, "note": "AA basis", "source": "ASM"}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"materials": {"al6061": entry}}), encoding="utf-8")
    material = load_material_file(path)["al6061"]
    assert (material.fatigue_cycles, material.fatigue_note) == (5e8, "AA basis")
    assert material.sources == {"fatigue_strength_Pa": "ASM"}


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_custom_id_may_not_shadow_a_builtin(tmp_path, suffix):
    path = tmp_path / f"bad{suffix}"
    if suffix == ".toml":
        path.write_text("[materials.ti6al4v]\n" + "".join(f"{k} = {v!r}\n" for k, v in AL6061.items()))
    else:
        path.write_text(json.dumps({"materials": {"ti6al4v": AL6061}}))
    with pytest.raises(MaterialError, match="custom material id 'ti6al4v' shadows the built-in material 'ti6al4v'"):
        load_material_file(path)


def test_inline_id_may_not_shadow_a_builtin_even_in_other_case():
    with pytest.raises(MaterialError, match="shadows the built-in material 'ss304'"):
        resolve_material({**AL6061, "id": "SS304"})
    with pytest.raises(MaterialError, match="shadows"):
        get_material("x", {"ti6al4v": get_material("ti6al4v")})


# --- invalid values ----------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("density_kg_m3", -2700.0),
    ("youngs_modulus_Pa", 0.0),
    ("poisson_ratio", 0.6),
    ("poisson_ratio", 0.0),
    ("loss_factor", 0.5),
    ("solidus_K", float("nan")),
    ("fatigue_cycles", -1.0),
    ("id", "my horn"),
])
def test_invalid_value_names_the_field(field, value):
    with pytest.raises(MaterialError) as info:
        resolve_material({**AL6061, "id": "bad", field: value})
    message = str(info.value)
    assert message.startswith("invalid material '")
    assert f"{field}:" in message


def test_missing_and_misspelt_fields_are_named():
    props = {k: v for k, v in AL6061.items() if k != "solidus_K"}
    props["densty_kg_m3"] = props.pop("density_kg_m3")
    with pytest.raises(MaterialError) as info:
        resolve_material({**props, "id": "bad"})
    message = str(info.value)
    assert "solidus_K: missing" in message
    assert "unknown property 'densty_kg_m3' (did you mean 'density_kg_m3'?)" in message


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(MaterialError, match="cannot read material file"):
        load_material_file(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[materials.x\n")
    with pytest.raises(MaterialError, match="not valid TOML"):
        load_material_file(bad)
    yaml = tmp_path / "m.yaml"
    yaml.write_text("x: 1\n")
    with pytest.raises(MaterialError, match=r"must end in \.toml or \.json"):
        load_material_file(yaml)


def test_other_types_are_refused():
    with pytest.raises(MaterialError, match="id or a table"):
        resolve_material(42)  # type: ignore[arg-type]
    with pytest.raises(MaterialError, match="needs an 'id' or a 'name'"):
        resolve_material({k: v for k, v in AL6061.items() if k != "name"})


# --- CLI tables --------------------------------------------------------------------------

def test_table_rows():
    rows = materials_table_rows()
    assert len(rows) == len(builtin_materials())
    assert all(len(row) == len(MATERIALS_TABLE_COLUMNS) for row in rows)
    ti = next(row for row in rows if row[0] == "ti6al4v")
    assert ti[2:] == ("4430", "113.8", "0.342", "6.7", "5068", "510 (10^7)")


def test_detail_rows_show_engineering_units_and_sources():
    rows = {prop: (value, source) for prop, value, source in material_detail_rows(get_material("al7075_t6"))}
    assert rows["Young's modulus E"][0] == "71.7 GPa"
    assert rows["yield strength"][0] == "503 MPa"
    assert rows["solidus"][0] == "750 K (477 °C)"
    assert rows["fatigue strength (R = −1)"][0] == "159 MPa at 5×10^8 cycles"
    assert "fatigue flag" in rows
    assert "MatWeb" in rows["density ρ"][1]
    custom_rows = material_detail_rows(resolve_material({**AL6061, "id": "c"}))
    assert ("density ρ", "2700 kg/m³", "(none given)") in custom_rows
