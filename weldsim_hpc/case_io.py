"""Loading cases from TOML or JSON, with presets and errors that name the field.

A case file may carry `[presets.<name>]` tables: partial cases merged over the base when
that preset is chosen (`--preset ci` gives the small meshes the tests use). Every error
is reported as "field.path[index].name: reason"; the loader collects all of them.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .case import CaseSpec
from .errors import CaseValidationError

CASE_SUFFIXES = (".toml", ".json")


def read_case_data(path: Path) -> dict[str, Any]:
    """Parse a TOML or JSON case file into plain data; errors name the file and line."""
    path = Path(path)
    if path.suffix.lower() not in CASE_SUFFIXES:
        raise CaseValidationError([("", f"{path.name}: a case file must end in .toml or .json")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseValidationError([("", f"cannot read {path}: {exc}")]) from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise CaseValidationError([("", f"{path.name} is not valid {path.suffix[1:].upper()}: {exc}")]) from None
    if not isinstance(data, dict):
        raise CaseValidationError([("", f"{path.name}: the top level must be a table/object")])
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of base with override merged in: tables merge key by key, other values replace."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_preset(data: dict[str, Any], preset: str | None) -> dict[str, Any]:
    """Remove the `presets` table and merge the chosen one over the case."""
    data = dict(data)
    presets = data.pop("presets", {}) or {}
    if preset is None:
        return data
    if not isinstance(presets, dict) or preset not in presets:
        known = ", ".join(sorted(presets)) if isinstance(presets, dict) else ""
        raise CaseValidationError([("presets", f"unknown preset '{preset}' (this case has: {known or 'none'})")])
    return deep_merge(data, presets[preset])


def format_location(loc: tuple, data: Any) -> str:
    """pydantic's error location as a field path, without union tags.

    pydantic puts the tag of a discriminated union into the location
    (('geometry', 'stepped', 'fillet_radius_m')); the input data tells us which parts
    are real keys, so the path reads as in the file: geometry.fillet_radius_m.
    """
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
            continue
        if isinstance(node, dict) and item not in node and item in (node.get("kind"), node.get("type")):
            continue  # a union tag, not a key
        if item in ("function-after", "function-before", "tagged-union") or "[" in str(item):
            continue
        parts.append(("." if parts else "") + str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)


def _message(error: dict) -> str:
    msg = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if error["type"] == "extra_forbidden":
        msg = "unknown option (check the spelling; `weldsim schema` lists every option)"
    elif error["type"] == "union_tag_invalid":
        ctx = error.get("ctx", {})
        msg = f"unknown type {ctx.get('tag')!r} (expected one of {ctx.get('expected_tags')})"
    return msg


def validation_problems(exc: ValidationError, data: Any) -> list[tuple[str, str]]:
    """Every pydantic error as (field path, reason)."""
    return [(format_location(e["loc"], data), _message(e)) for e in exc.errors()]


def parse_case(data: dict[str, Any], base_dir: Path | None = None) -> CaseSpec:
    """Validate plain case data (models, then cross-field checks); raise every problem."""
    from .case_checks import check_case

    try:
        case = CaseSpec.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise CaseValidationError(validation_problems(exc, data)) from None
    problems = check_case(case)
    if problems:
        raise CaseValidationError(problems)
    return case


def load_case(path: str | Path, preset: str | None = None) -> CaseSpec:
    """Read, merge the preset, and validate a case file (paths relative to the file)."""
    path = Path(path)
    data = apply_preset(read_case_data(path), preset)
    return parse_case(data, base_dir=path.resolve().parent)
