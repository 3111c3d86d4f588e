"""/api/v1/materials: the built-in library (read-only) and your custom materials.

The property fields are weldsim_hpc.materials.Material's own (SI units, names carry the
unit), and a custom material is validated by that model: the API accepts exactly what a
run accepts.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from weldsim_hpc import materials as lib

from ..extensions import db
from ..services import materials
from ..services.materials import CUSTOM_PROPERTIES, MAX_SOURCE
from .common import Name, Strict, api_blueprint, changes_of, current_user, json_response, no_content

bp = api_blueprint("materials", "/materials", "Materials: the built-in library and your custom materials (SI units)")


def _properties_model(name: str, optional: bool) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for key in CUSTOM_PROPERTIES:
        info = copy.copy(lib.Material.model_fields[key])
        annotation = info.annotation
        if optional:
            info.default, annotation = None, annotation | None
        fields[key] = (annotation, info)
    return create_model(name, __config__=ConfigDict(extra="forbid", from_attributes=True), **fields)


MaterialProperties = _properties_model("MaterialProperties", optional=False)
MaterialPropertiesPatch = _properties_model("MaterialPropertiesPatch", optional=True)


class BuiltinMaterialOut(BaseModel):
    material_id: str
    name: str
    aliases: list[str]
    properties: MaterialProperties
    sources: dict[str, str] = Field(description="property -> where the number comes from")
    bar_sound_speed_m_s: float = Field(description="√(E/ρ): sets a half-wave horn's length")


class BuiltinList(BaseModel):
    items: list[BuiltinMaterialOut]


class CustomMaterialOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    owner_id: int
    material_id: str
    name: str
    properties: MaterialProperties
    source: str
    created_at: dt.datetime
    updated_at: dt.datetime


class CustomList(BaseModel):
    items: list[CustomMaterialOut]


class MaterialChoice(BaseModel):
    material_id: str = Field(description="what a case names in `materials`")
    name: str
    builtin: bool
    id: int | None = Field(description="custom materials: the id of /materials/custom/{id}")


class ChoiceList(BaseModel):
    items: list[MaterialChoice]


class CustomCreate(Strict):
    material_id: str = Field(max_length=64, description="unique among yours; may not shadow a built-in")
    name: Name | None = Field(None, description="default: the material id")
    properties: MaterialProperties
    source: str = Field("", max_length=MAX_SOURCE, description="where the numbers come from")


class CustomUpdate(Strict):
    name: Name | None = None
    properties: MaterialPropertiesPatch | None = Field(None, description="merged over the stored properties")
    source: str | None = Field(None, max_length=MAX_SOURCE)


class CustomQuery(Strict):
    all_users: bool = Field(False, description="admins: every user's custom materials")


class BuiltinPath(BaseModel):
    material_id: str


class CustomPath(BaseModel):
    material_row_id: int


def _builtin_out(m: lib.Material) -> dict[str, Any]:
    return {"material_id": m.id, "name": m.name, "aliases": list(m.aliases), "sources": dict(m.sources),
            "properties": {k: getattr(m, k) for k in CUSTOM_PROPERTIES}, "bar_sound_speed_m_s": m.bar_sound_speed_m_s}


@bp.get("", responses={200: ChoiceList})
def list_materials():
    """Every material you can name in a case: the built-ins, then yours."""
    items = [{"material_id": m.id, "name": m.name, "builtin": True, "id": None} for m in materials.builtin_materials()]
    items += [{"material_id": r.material_id, "name": r.name, "builtin": False, "id": r.id}
              for r in materials.list_custom(db.session, current_user())]
    return json_response(ChoiceList, {"items": items})


@bp.get("/builtin", responses={200: BuiltinList})
def list_builtin():
    return json_response(BuiltinList, {"items": [_builtin_out(m) for m in materials.builtin_materials()]})


@bp.get("/builtin/<material_id>", responses={200: BuiltinMaterialOut})
def get_builtin(path: BuiltinPath):
    return json_response(BuiltinMaterialOut, _builtin_out(materials.get_builtin(path.material_id)))


@bp.get("/custom", responses={200: CustomList})
def list_custom(query: CustomQuery):
    rows = materials.list_custom(db.session, current_user(), all_users=query.all_users)
    return json_response(CustomList, {"items": rows})


@bp.post("/custom", responses={201: CustomMaterialOut})
def create_custom(body: CustomCreate):
    row = materials.create_custom(db.session, current_user(), material_id=body.material_id, name=body.name,
                                  properties=body.properties.model_dump(exclude_none=True), source=body.source)
    return json_response(CustomMaterialOut, row, 201, Location=f"{bp.url_prefix}/custom/{row.id}")


@bp.get("/custom/<int:material_row_id>", responses={200: CustomMaterialOut})
def get_custom(path: CustomPath):
    return json_response(CustomMaterialOut, materials.get_custom(db.session, current_user(), path.material_row_id))


@bp.patch("/custom/<int:material_row_id>", responses={200: CustomMaterialOut})
def update_custom(path: CustomPath, body: CustomUpdate):
    changes = changes_of(body)
    if "properties" in changes:
        changes["properties"] = body.properties.model_dump(exclude_unset=True)
    row = materials.update_custom(db.session, current_user(), path.material_row_id, changes)
    return json_response(CustomMaterialOut, row)


@bp.delete("/custom/<int:material_row_id>", responses={204: None})
def delete_custom(path: CustomPath):
    """Delete a custom material (409 while one of your cases uses it)."""
    materials.delete_custom(db.session, current_user(), path.material_row_id)
    return no_content()
