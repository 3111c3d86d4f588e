"""Materials: weldsim_hpc's built-in library (read-only) and users' custom materials.

A custom material row holds the numbers of weldsim_hpc.materials.Material in SI units
(CUSTOM_PROPERTIES) and is validated by that same model, so the portal accepts exactly
what the solver accepts. Its `material_id` is what a case names in `materials`; it is
unique per owner and may not shadow a built-in.

A case refers to custom materials by id; at submit the values are inlined into the
case document (`inline_custom_materials`), so a job never reads the database and the
run's case.json records the values it used.

Example::

    row = create_custom(session, user, material_id="cu_soft", name="Annealed Cu",
                        properties={"density_kg_m3": 8940, ...}, source="supplier sheet 2026")
    library = custom_library(session, user.id)      # id -> weldsim_hpc Material
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from weldsim_hpc import materials as lib

from ..models import Material as MaterialRow
from ..models import Project, SimulationCase, User
from .errors import Conflict, Invalid, NotFound
from .names import check_name

#: the fields of weldsim_hpc.materials.Material a custom material gives (SI units)
CUSTOM_PROPERTIES = lib.PROPERTY_FIELDS + ("fatigue_cycles", "fatigue_note")
MAX_SOURCE = 2000
#: as weldsim_hpc.materials accepts ids, at most as long as the column
MATERIAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
UPDATABLE = ("name", "properties", "source")


# --- built-in --------------------------------------------------------------------------------

def builtin_materials() -> list[lib.Material]:
    return list(lib.builtin_materials().values())


def get_builtin(material_id: str) -> lib.Material:
    material = lib.builtin_materials().get(material_id)
    if material is None:
        raise NotFound(f"no built-in material {material_id!r}")
    return material


# --- validation ------------------------------------------------------------------------------

def _material_id(value: Any) -> str:
    if not isinstance(value, str) or not MATERIAL_ID.fullmatch(value):
        raise Invalid("must be 1 to 64 characters, starting with a letter or digit, of letters, digits, "
                      "'_', '.', '-'", field="material_id")
    for builtin_id in lib.builtin_materials():
        if value.lower() == builtin_id.lower():
            raise Conflict(f"{value!r} shadows the built-in material {builtin_id!r}: choose another id",
                           field="material_id")
    return value


def validate_properties(material_id: str, name: str, properties: Any, source: str = "") -> lib.Material:
    """The weldsim_hpc Material these properties make; Invalid naming each bad property."""
    if not isinstance(properties, Mapping):
        raise Invalid("must be an object of property -> value in SI units", field="properties")
    unknown = sorted(set(properties) - set(CUSTOM_PROPERTIES))
    if unknown:
        raise Invalid.from_problems(
            [(k, f"unknown property (valid: {', '.join(CUSTOM_PROPERTIES)})") for k in unknown], "properties")
    fields = {"id": material_id, "name": name, **properties}
    if source:
        fields["sources"] = {key: source for key in properties if key != "fatigue_note"}
    try:
        return lib.Material.model_validate(fields)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            reason = "missing" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
            problems.append((key, reason))
        raise Invalid.from_problems(problems, "properties") from None


def _properties_of(material: lib.Material) -> dict[str, Any]:
    """The stored form: every custom property, as validated (fatigue_note may be filled in)."""
    return {key: getattr(material, key) for key in CUSTOM_PROPERTIES if getattr(material, key) is not None}


def _source(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_SOURCE:
        raise Invalid(f"must be a string of at most {MAX_SOURCE} characters", field="source")
    return value.strip()


# --- custom materials ------------------------------------------------------------------------

def list_custom(session: Session, user: User, *, all_users: bool = False) -> list[MaterialRow]:
    """`user`'s custom materials; an admin may ask for every user's (`all_users`)."""
    stmt = select(MaterialRow).order_by(MaterialRow.material_id, MaterialRow.id)
    if not (all_users and user.is_admin):
        stmt = stmt.where(MaterialRow.owner_id == user.id)
    return list(session.scalars(stmt))


def get_custom(session: Session, user: User, row_id: int) -> MaterialRow:
    row = session.get(MaterialRow, row_id) if isinstance(row_id, int) and 0 < row_id < 2**63 else None
    if row is None or (row.owner_id != user.id and not user.is_admin):
        raise NotFound(f"custom material {row_id} not found")
    return row


def create_custom(session: Session, owner: User, *, material_id: str, properties: Mapping[str, Any],
                  name: str | None = None, source: str = "") -> MaterialRow:
    """A new custom material of `owner`, validated as weldsim_hpc validates materials."""
    material_id = _material_id(material_id)
    name = check_name(name if name is not None else material_id)
    source = _source(source)
    material = validate_properties(material_id, name, properties, source)
    if session.scalar(select(MaterialRow.id).where(MaterialRow.owner_id == owner.id,
                                                   MaterialRow.material_id == material_id)) is not None:
        raise Conflict(f"you have a custom material {material_id!r} already", field="material_id")
    row = MaterialRow(owner_id=owner.id, material_id=material_id, name=name,
                      properties=_properties_of(material), source=source)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"you have a custom material {material_id!r} already", field="material_id") from None
    return row


def update_custom(session: Session, user: User, row_id: int, changes: Mapping[str, Any]) -> MaterialRow:
    """Change name, source, or properties (merged over the stored ones, then re-validated).

    The material id cannot change: cases refer to it.
    """
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise Invalid(f"cannot be changed (changeable: {', '.join(UPDATABLE)}; the material id is "
                      "fixed because cases refer to it)", field=sorted(unknown)[0])
    row = get_custom(session, user, row_id)
    name = check_name(changes["name"]) if "name" in changes else row.name
    source = _source(changes["source"]) if "source" in changes else row.source
    properties = dict(row.properties)
    if "properties" in changes:
        if not isinstance(changes["properties"], Mapping):
            raise Invalid("must be an object of property -> value in SI units", field="properties")
        properties.update(changes["properties"])
        if "fatigue_cycles" in changes["properties"] and "fatigue_note" not in changes["properties"]:
            properties.pop("fatigue_note", None)  # the old flag was about the old life
    material = validate_properties(row.material_id, name, properties, source)
    row.name, row.source, row.properties = name, source, _properties_of(material)
    session.commit()
    return row


def delete_custom(session: Session, user: User, row_id: int) -> None:
    """Delete a custom material; Conflict while a case of its owner uses it."""
    row = get_custom(session, user, row_id)
    users = cases_using(session, row.owner_id, row.material_id)
    if users:
        names = ", ".join(f"{c.name!r} (project {c.project_id})" for c in users[:5])
        raise Conflict(f"custom material {row.material_id!r} is used by {len(users)} case"
                       f"{'s' if len(users) > 1 else ''}: {names}; change them first")
    session.delete(row)
    session.commit()


def cases_using(session: Session, owner_id: int, material_id: str) -> list[SimulationCase]:
    """The cases of `owner_id`'s projects that take `material_id` from the custom library."""
    cases = session.scalars(select(SimulationCase).join(Project).where(Project.owner_id == owner_id)
                            .order_by(SimulationCase.id))
    return [c for c in cases if material_id in referenced_custom_ids(c.spec)]


# --- cases and custom materials ------------------------------------------------------------

def referenced_custom_ids(spec: Any) -> set[str]:
    """Material ids a case document names in `materials` and does not define itself."""
    if not isinstance(spec, Mapping):
        return set()
    materials = spec.get("materials")
    own = spec.get("custom_materials")
    own = set(own) if isinstance(own, Mapping) else set()
    if not isinstance(materials, Mapping):
        return set()
    return {v for v in materials.values() if isinstance(v, str) and v not in own}


def custom_library(session: Session, owner_id: int) -> dict[str, MaterialRow]:
    """material_id -> row, for the custom materials of one user."""
    rows = session.scalars(select(MaterialRow).where(MaterialRow.owner_id == owner_id))
    return {row.material_id: row for row in rows}


def inline_properties(row: MaterialRow) -> dict[str, Any]:
    """A custom material as a case's `custom_materials` entry (name, values, sources)."""
    entry: dict[str, Any] = {"name": row.name, **row.properties}
    if row.source:
        entry["sources"] = {key: row.source for key in row.properties if key != "fatigue_note"}
    return entry


def inline_custom_materials(spec: Mapping[str, Any], library: Mapping[str, MaterialRow]) -> dict[str, Any]:
    """A copy of `spec` with every custom material it names from `library` inlined.

    Ids the case defines in its own `custom_materials` are left alone (the case wins),
    ids that are neither there nor in `library` are left for validation to report.
    """
    wanted = sorted(i for i in referenced_custom_ids(spec) if i in library)
    if not wanted:
        return dict(spec)
    own = dict(spec.get("custom_materials") or {})
    for material_id in wanted:
        own[material_id] = inline_properties(library[material_id])
    return {**spec, "custom_materials": own}
