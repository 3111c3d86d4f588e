"""Workflows: a DAG of steps (weldsim_hpc.workflow) stored as JSON with its state."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from ..extensions import db
from .types import BatchState, UTCDateTime, choice, one_of, utcnow

if TYPE_CHECKING:
    from .projects import Project


class Workflow(db.Model):
    __tablename__ = "workflows"
    __table_args__ = (one_of("state", BatchState),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    dag: Mapped[dict[str, Any]] = mapped_column(JSON)  # steps and their dependencies
    state: Mapped[str] = mapped_column(String(16), default=BatchState.DRAFT.value)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship()

    @validates("state")
    def _check_state(self, key: str, value: Any) -> str:
        return choice(value, BatchState, key)

    def __repr__(self) -> str:
        return f"<Workflow {self.id} {self.name!r} {self.state}>"
