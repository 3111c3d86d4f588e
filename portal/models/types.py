"""Column types and choice lists shared by the models.

Portable types only (String with a length, Text, Integer, BigInteger, Float, Boolean,
JSON, DateTime(timezone=True)), so SQLite and PostgreSQL hold the same schema.

Choice columns are plain strings guarded by a named CHECK constraint built from a
str Enum (`one_of`). Alembic does not autogenerate CHECK changes: a new value in one of
these enums needs a hand-written migration that recreates the constraint.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from typing import Any

from sqlalchemy import CheckConstraint, DateTime
from sqlalchemy.types import TypeDecorator

from weldsim_hpc.states import RunState

from ..config import EXECUTORS


class ApplicationType(str, enum.Enum):
    """What a project designs: a battery-tab weld, a general metal joint, or a horn."""

    LI_BATTERY_TAB = "li_battery_tab"
    GENERAL_METAL = "general_metal"
    HORN_DESIGN = "horn_design"


class GeometryKind(str, enum.Enum):
    """parametric: built from `params` by weldsim_hpc.geometry; uploaded: a user's file."""

    PARAMETRIC = "parametric"
    UPLOADED = "uploaded"


class GeometryStatus(str, enum.Enum):
    """Where a geometry version's out-of-process job stands.

    parametric: generating (STEP/STL) → generated; meshing → meshed (request_mesh)
    uploaded STEP: generating (grouped) → generated; meshing → meshed
    uploaded .msh: generating (checked) → meshed
    any job may end in failed, with the version's `error` saying why.
    """

    GENERATING = "generating"
    GENERATED = "generated"
    MESHING = "meshing"
    MESHED = "meshed"
    FAILED = "failed"


class StudyKind(str, enum.Enum):
    SWEEP = "sweep"
    OPTIMIZATION = "optimization"


class BatchState(str, enum.Enum):
    """State of a study or a workflow (a batch of runs); each run keeps its own RunState."""

    DRAFT = "draft"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def values(choices: type[enum.Enum] | Iterable[str]) -> tuple[str, ...]:
    return tuple(c.value if isinstance(c, enum.Enum) else str(c) for c in choices)


def one_of(column: str, choices: type[enum.Enum] | Iterable[str], name: str | None = None) -> CheckConstraint:
    """CHECK (<column> IN (...)), named ck_<table>_<name or column>."""
    quoted = ", ".join(f"'{v}'" for v in values(choices))
    return CheckConstraint(f"{column} IN ({quoted})", name=name or column)


def choice(value: Any, choices: type[enum.Enum], field: str) -> str:
    """The stored text of `value` (an enum member or its text); ValueError naming the field."""
    text = value.value if isinstance(value, enum.Enum) else value
    allowed = values(choices)
    if text not in allowed:
        raise ValueError(f"{field}: {value!r} is not one of {', '.join(allowed)}")
    return text


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """DateTime(timezone=True) that always hands back aware UTC datetimes.

    PostgreSQL stores timestamptz; SQLite stores text without an offset, so values are
    converted to UTC before they are written and get tzinfo=UTC when read. Naive
    datetimes are refused (they are the classic off-by-hours bug): use `utcnow()`.
    Migrations render it as ``sa.DateTime(timezone=True)`` (see migrations/env.py).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone (e.g. portal.models.utcnow())")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


__all__ = ["ApplicationType", "BatchState", "EXECUTORS", "GeometryKind", "GeometryStatus", "RunState", "StudyKind",
           "UTCDateTime", "choice", "one_of", "utcnow", "values"]
