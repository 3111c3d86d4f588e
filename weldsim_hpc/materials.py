"""Material library: built-in metals of ultrasonic welding, plus custom ones from a file or a case.

Units are SI everywhere inside the code, and the field names carry them: kg/m^3, Pa, W/(m K),
J/(kg K), 1/K, K. Only `material_detail_rows` / `materials_table_rows` convert to the units
engineers read (GPa, MPa, °C). The built-ins live in `data/materials.toml`, where every number
has the source it came from; a value that is an estimate says so in its source.

Fatigue strength is the R = -1 amplitude at `fatigue_cycles`. A 20 kHz horn sees 7e7 cycles an
hour, so 1e9 is the life that matters; any other life carries `fatigue_note` (a flag that is
filled in automatically when a custom material gives none).

Example:
    >>> ti = get_material("ti6al4v")
    >>> round(ti.bar_sound_speed_m_s)
    5068
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import MaterialError

GIGACYCLES = 1e9
"""The fatigue life a horn design is checked against (R = -1)."""

PROPERTY_FIELDS = (
    "density_kg_m3", "youngs_modulus_Pa", "poisson_ratio", "conductivity_W_mK", "specific_heat_J_kgK",
    "expansion_1_K", "yield_strength_Pa", "fatigue_strength_Pa", "loss_factor", "solidus_K",
)
"""The numbers every built-in must give with a source (fatigue_cycles shares the fatigue source)."""

_POSITIVE_UNITS = {
    "density_kg_m3": "kg/m^3", "youngs_modulus_Pa": "Pa", "conductivity_W_mK": "W/(m K)",
    "specific_heat_J_kgK": "J/(kg K)", "expansion_1_K": "1/K", "yield_strength_Pa": "Pa",
    "fatigue_strength_Pa": "Pa", "fatigue_cycles": "cycles", "solidus_K": "K",
}
_ENTRY_KEYS = {"value", "source", "cycles", "note"}
_NO_SOURCE = "(none given)"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def lame_parameters(youngs_modulus_Pa: float, poisson_ratio: float) -> tuple[float, float]:
    """Lamé constants (λ, μ) in Pa of an isotropic solid from E [Pa] and ν."""
    lam = youngs_modulus_Pa * poisson_ratio / ((1 + poisson_ratio) * (1 - 2 * poisson_ratio))
    return lam, youngs_modulus_Pa / (2 * (1 + poisson_ratio))


def _power_label(cycles: float) -> str:
    """1e7 -> '10^7', 5e8 -> '5×10^8' (how fatigue lives are written)."""
    exponent = math.floor(math.log10(cycles))
    mantissa = cycles / 10**exponent
    return f"10^{exponent}" if math.isclose(mantissa, 1.0) else f"{mantissa:g}×10^{exponent}"


class Material(BaseModel):
    """One isotropic, room-temperature material in SI units; `sources` maps property -> citation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    density_kg_m3: float
    youngs_modulus_Pa: float
    poisson_ratio: float
    conductivity_W_mK: float
    specific_heat_J_kgK: float
    expansion_1_K: float
    yield_strength_Pa: float
    fatigue_strength_Pa: float
    fatigue_cycles: float
    fatigue_note: str | None = None
    loss_factor: float
    solidus_K: float
    sources: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _flag_fatigue_life(cls, data: Any) -> Any:
        """A fatigue strength at any life other than 1e9 must say so; supply a flag if missing."""
        if isinstance(data, Mapping) and not data.get("fatigue_note"):
            try:
                cycles = float(data["fatigue_cycles"])
            except (KeyError, TypeError, ValueError):
                return data  # reported by field validation
            if math.isfinite(cycles) and cycles > 0 and cycles != GIGACYCLES:
                data = {**data, "fatigue_note": f"{_power_label(cycles)} value: no 10^9 value given"}
        return data

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError(f"must start with a letter or digit and use only letters, digits, '_', '.', '-', got {value!r}")
        return value

    @field_validator(*_POSITIVE_UNITS)
    @classmethod
    def _positive(cls, value: float, info: Any) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"must be a positive number in {_POSITIVE_UNITS[info.field_name]}, got {value!r}")
        return value

    @field_validator("poisson_ratio")
    @classmethod
    def _poisson(cls, value: float) -> float:
        if not 0 < value < 0.5:
            raise ValueError(f"must lie strictly between 0 and 0.5 for an isotropic metal, got {value!r}")
        return value

    @field_validator("loss_factor")
    @classmethod
    def _loss(cls, value: float) -> float:
        if not 0 < value <= 0.1:
            raise ValueError(f"must lie in (0, 0.1] (metals: about 1e-5 to 1e-2; Q = 1/η), got {value!r}")
        return value

    @property
    def bar_sound_speed_m_s(self) -> float:
        """Thin-rod longitudinal wave speed c0 = √(E/ρ) [m/s]: sets the half-wave horn length."""
        return math.sqrt(self.youngs_modulus_Pa / self.density_kg_m3)

    @property
    def shear_modulus_Pa(self) -> float:
        """G = E / (2(1 + ν)) [Pa]."""
        return self.youngs_modulus_Pa / (2 * (1 + self.poisson_ratio))

    @property
    def shear_speed_m_s(self) -> float:
        """Shear (torsional) wave speed √(G/ρ) [m/s]."""
        return math.sqrt(self.shear_modulus_Pa / self.density_kg_m3)

    def lame_parameters(self) -> tuple[float, float]:
        """Lamé constants (λ, μ) [Pa]."""
        return lame_parameters(self.youngs_modulus_Pa, self.poisson_ratio)

    def __hash__(self) -> int:  # `sources` is a dict, so the frozen model's default hash would fail
        return hash((self.id, self.density_kg_m3, self.youngs_modulus_Pa, self.poisson_ratio))


# --- building materials from files and dicts ------------------------------------------------

def _describe(exc: ValidationError, label: str) -> str:
    """One line naming each bad field: what is wrong and what was given."""
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "material"
        if err["type"] == "extra_forbidden":
            hint = difflib.get_close_matches(field, list(Material.model_fields), n=1)
            problems.append(f"unknown property '{field}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
        elif err["type"] == "missing":
            problems.append(f"{field}: missing")
        elif err["type"] == "value_error":
            problems.append(f"{field}: {err['msg'].removeprefix('Value error, ')}")
        else:
            problems.append(f"{field}: {err['msg']} (got {err.get('input')!r})")
    return f"invalid material {label}: " + "; ".join(problems)


def _flatten(mat_id: str, entry: Any, where: str) -> dict[str, Any]:
    """File/inline entry -> model fields. A property is a number or {value, source[, cycles, note]}."""
    if not isinstance(entry, Mapping):
        raise MaterialError(f"{where}: material '{mat_id}' must be a table of properties, got {type(entry).__name__}")
    fields: dict[str, Any] = {}
    if not isinstance(entry.get("sources") or {}, Mapping):
        raise MaterialError(f"{where}: {mat_id}.sources must be a table of property -> citation")
    sources = dict(entry.get("sources") or {})
    for key, raw in entry.items():
        if key == "sources":
            continue
        if not isinstance(raw, Mapping):
            fields[key] = raw
            continue
        allowed = _ENTRY_KEYS if key == "fatigue_strength_Pa" else {"value", "source"}
        if "value" not in raw or set(raw) - allowed:
            raise MaterialError(f"{where}: {mat_id}.{key} must be a number or a table with keys "
                                f"{', '.join(sorted(allowed))} ('value' required), got keys {', '.join(raw)}")
        fields[key] = raw["value"]
        if "source" in raw:
            sources[key] = str(raw["source"])
        if "cycles" in raw:
            fields["fatigue_cycles"] = raw["cycles"]
        if "note" in raw:
            fields["fatigue_note"] = raw["note"]
    if fields.setdefault("id", mat_id) != mat_id:
        raise MaterialError(f"{where}: material '{mat_id}' has a different id '{fields['id']}' inside")
    fields.setdefault("name", mat_id)
    fields["sources"] = sources
    return fields


def _build(fields: dict[str, Any], label: str) -> Material:
    try:
        return Material.model_validate(fields)
    except ValidationError as exc:
        raise MaterialError(_describe(exc, label)) from None


def _parse_library(doc: Mapping[str, Any], where: str) -> dict[str, Material]:
    """{'materials': {id: entry}} (or {id: entry}) -> id -> Material, in file order."""
    table = doc.get("materials", {k: v for k, v in doc.items() if k != "schema"})
    if not isinstance(table, Mapping) or not table:
        raise MaterialError(f"{where}: no materials found (expected a [materials.<id>] table per material)")
    return {mid: _build(_flatten(mid, entry, where), f"'{mid}' in {where}") for mid, entry in table.items()}


@functools.cache
def _builtin() -> dict[str, Material]:
    text = resources.files("weldsim_hpc").joinpath("data/materials.toml").read_text(encoding="utf-8")
    return _parse_library(tomllib.loads(text), "built-in materials.toml")


def builtin_materials() -> dict[str, Material]:
    """id -> Material for the packaged library (a fresh dict; the parsed file is cached)."""
    return dict(_builtin())


def _refuse_shadowing(mat_id: str, where: str = "") -> None:
    """Custom ids must not hide a built-in (compared case-insensitively): results would be ambiguous."""
    for builtin_id in _builtin():
        if mat_id.lower() == builtin_id.lower():
            prefix = f"{where}: " if where else ""
            raise MaterialError(f"{prefix}custom material id '{mat_id}' shadows the built-in material "
                                f"'{builtin_id}'; choose another id")


def load_material_file(path: str | Path) -> dict[str, Material]:
    """Custom materials from a .toml or .json file laid out like data/materials.toml.

    Each `[materials.<id>]` table gives the Material fields in SI units, each as a bare number or
    as {value = ..., source = "..."}; fatigue may add `cycles` and `note`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MaterialError(f"cannot read material file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            doc = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            doc = json.loads(text)
        else:
            raise MaterialError(f"material file {path} must end in .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise MaterialError(f"material file {path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(doc, Mapping):
        raise MaterialError(f"material file {path}: expected a table of materials at the top level")
    materials = _parse_library(doc, str(path))
    for mat_id in materials:
        _refuse_shadowing(mat_id, str(path))
    return materials


def material_from_dict(props: Mapping[str, Any]) -> Material:
    """An inline (case-file) material; `id` defaults to a slug of `name`."""
    mat_id = props.get("id") or re.sub(r"[^a-z0-9]+", "_", str(props.get("name", "")).lower()).strip("_")
    if not mat_id:
        raise MaterialError("an inline material needs an 'id' or a 'name'")
    if not isinstance(mat_id, str):
        raise MaterialError(f"an inline material's id must be a string, got {mat_id!r}")
    _refuse_shadowing(mat_id)
    return _build(_flatten(mat_id, {**props, "id": mat_id}, "inline material"), f"'{mat_id}'")


# --- lookup ------------------------------------------------------------------------------

def _norm(label: str) -> str:
    return re.sub(r"[^a-z0-9]", "", label.lower())


def _unknown(query: str, known: Mapping[str, Material]) -> MaterialError:
    """Suggest the id whose id, name or alias is closest (ignoring case and punctuation)."""
    index: dict[str, str] = {}
    for mat_id, material in known.items():
        for label in (mat_id, material.name, *material.aliases):
            index.setdefault(_norm(label), mat_id)
    key = _norm(query)
    close = [key] if key in index else difflib.get_close_matches(key, list(index), n=1, cutoff=0.6)
    if close:
        return MaterialError(f"unknown material '{query}' (did you mean '{index[close[0]]}'?)")
    return MaterialError(f"unknown material '{query}' (known: {', '.join(known)})")


def get_material(material_id: str, custom: Mapping[str, Material] | None = None) -> Material:
    """The built-in or custom material with exactly this id; MaterialError with a suggestion if none."""
    custom = custom or {}
    for custom_id in custom:
        _refuse_shadowing(custom_id)
    if material_id in custom:
        return custom[material_id]
    if material_id in _builtin():
        return _builtin()[material_id]
    raise _unknown(material_id, {**_builtin(), **custom})


def resolve_material(value: str | Mapping[str, Any] | Material,
                     custom: Mapping[str, Material] | None = None) -> Material:
    """A case's material entry -> Material: an id (built-in or in `custom`) or inline properties."""
    if isinstance(value, Material):
        return value
    if isinstance(value, str):
        return get_material(value, custom)
    if isinstance(value, Mapping):
        return material_from_dict(value)
    raise MaterialError(f"a material must be an id or a table of properties, got {type(value).__name__}")


# --- tables for the CLI ------------------------------------------------------------------

MATERIALS_TABLE_COLUMNS = ("id", "name", "ρ kg/m³", "E GPa", "ν", "k W/m·K", "c0 m/s", "fatigue MPa (cycles)")


def _fmt(x: float, sig: int = 4) -> str:
    return f"{x:.0f}" if abs(x) >= 10**sig else f"{x:.{sig}g}"


def materials_table_rows(materials: Mapping[str, Material] | None = None) -> list[tuple[str, ...]]:
    """One row per material (built-ins by default), columns as MATERIALS_TABLE_COLUMNS."""
    rows = []
    for m in (materials if materials is not None else _builtin()).values():
        fatigue = f"{_fmt(m.fatigue_strength_Pa / 1e6)} ({_power_label(m.fatigue_cycles)})"
        rows.append((m.id, m.name, _fmt(m.density_kg_m3), _fmt(m.youngs_modulus_Pa / 1e9), _fmt(m.poisson_ratio),
                     _fmt(m.conductivity_W_mK), f"{m.bar_sound_speed_m_s:.0f}", fatigue))
    return rows


def material_detail_rows(material: Material) -> list[tuple[str, str, str]]:
    """(property, value with engineering unit, source) rows for `weldsim materials show ID`."""
    m, src = material, material.sources
    rows = [
        ("density ρ", f"{_fmt(m.density_kg_m3)} kg/m³", src.get("density_kg_m3", _NO_SOURCE)),
        ("Young's modulus E", f"{_fmt(m.youngs_modulus_Pa / 1e9)} GPa", src.get("youngs_modulus_Pa", _NO_SOURCE)),
        ("Poisson's ratio ν", _fmt(m.poisson_ratio), src.get("poisson_ratio", _NO_SOURCE)),
        ("shear modulus G", f"{_fmt(m.shear_modulus_Pa / 1e9)} GPa", "derived: E / (2(1 + ν))"),
        ("bar sound speed c0", f"{m.bar_sound_speed_m_s:.0f} m/s", "derived: √(E/ρ)"),
        ("shear wave speed cT", f"{m.shear_speed_m_s:.0f} m/s", "derived: √(G/ρ)"),
        ("thermal conductivity k", f"{_fmt(m.conductivity_W_mK)} W/(m·K)", src.get("conductivity_W_mK", _NO_SOURCE)),
        ("specific heat c_p", f"{_fmt(m.specific_heat_J_kgK)} J/(kg·K)", src.get("specific_heat_J_kgK", _NO_SOURCE)),
        ("thermal expansion α", f"{_fmt(m.expansion_1_K * 1e6)} µm/(m·K)", src.get("expansion_1_K", _NO_SOURCE)),
        ("yield strength", f"{_fmt(m.yield_strength_Pa / 1e6)} MPa", src.get("yield_strength_Pa", _NO_SOURCE)),
        ("fatigue strength (R = −1)", f"{_fmt(m.fatigue_strength_Pa / 1e6)} MPa at {_power_label(m.fatigue_cycles)} cycles",
         src.get("fatigue_strength_Pa", _NO_SOURCE)),
    ]
    if m.fatigue_note:
        rows.append(("fatigue flag", m.fatigue_note, ""))
    rows += [
        ("loss factor η", f"{m.loss_factor:g} (Q ≈ {1 / m.loss_factor:.0f})", src.get("loss_factor", _NO_SOURCE)),
        ("solidus", f"{m.solidus_K:.0f} K ({m.solidus_K - 273.15:.0f} °C)", src.get("solidus_K", _NO_SOURCE)),
    ]
    if m.aliases:
        rows.append(("aliases", ", ".join(m.aliases), ""))
    return rows
