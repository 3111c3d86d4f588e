"""Projects, their geometry versions and their simulation cases.

Nullable JSON columns use ``none_as_null=True``: Python None is SQL NULL, never the JSON
text 'null' (which IS NOT NULL would accept).

A geometry version is immutable once a case uses it: a case's foreign key to it has no
ON DELETE action, so deleting a used version fails (deleting the whole project removes
both). File paths are relative to the storage root (Settings.storage_root).

A geometry version's files are made out of process (gmsh, see portal.geometry_jobs), so a
version carries a `status` (GeometryStatus: generating → generated → meshing → meshed, or
failed with `error`); `mesh_path` is set once a mesh exists (meshed).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from ..extensions import db
from .types import ApplicationType, GeometryKind, GeometryStatus, UTCDateTime, choice, one_of, utcnow

if TYPE_CHECKING:
    from .runs import Run
    from .users import User


class Project(db.Model):
    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("owner_id", "name"),
        one_of("application_type", ApplicationType),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    application_type: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship(back_populates="projects")
    geometry_versions: Mapped[list[GeometryVersion]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True,
        order_by="GeometryVersion.version")
    cases: Mapped[list[SimulationCase]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True)
    runs: Mapped[list[Run]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True)

    @validates("application_type")
    def _check_type(self, key: str, value: Any) -> str:
        return choice(value, ApplicationType, key)

    def __repr__(self) -> str:
        return f"<Project {self.id} {self.name!r} ({self.application_type})>"


class GeometryVersion(db.Model):
    """One numbered geometry of a project: parameters of a builder, or an uploaded file."""

    __tablename__ = "geometry_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "version"),
        one_of("kind", GeometryKind),
        one_of("status", GeometryStatus),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("(kind = 'parametric' AND params IS NOT NULL)"
                        " OR (kind = 'uploaded' AND file_path IS NOT NULL)", name="kind_source"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, … per project
    kind: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # parametric: builder parameters
    file_path: Mapped[str | None] = mapped_column(String(1024))  # uploaded: relative to storage root
    mesh_info: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # node/cell counts, groups, bounds
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # out-of-process generation and meshing (portal.services.geometries): where it stands
    status: Mapped[str] = mapped_column(String(16), default=GeometryStatus.GENERATED.value)
    error: Mapped[str | None] = mapped_column(Text)  # why the last job failed (status failed)
    mesh_path: Mapped[str | None] = mapped_column(String(1024))  # the .msh, relative to storage root
    source_name: Mapped[str | None] = mapped_column(String(255))  # uploaded: the sanitised file name (a label)

    project: Mapped[Project] = relationship(back_populates="geometry_versions")

    @validates("kind")
    def _check_kind(self, key: str, value: Any) -> str:
        return choice(value, GeometryKind, key)

    @validates("status")
    def _check_status(self, key: str, value: Any) -> str:
        return choice(value, GeometryStatus, key)

    def __repr__(self) -> str:
        return f"<GeometryVersion {self.id} project={self.project_id} v{self.version} {self.kind}>"


class SimulationCase(db.Model):
    """A named CaseSpec (as JSON) of a project, optionally tied to one geometry version."""

    __tablename__ = "simulation_cases"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    geometry_version_id: Mapped[int | None] = mapped_column(ForeignKey("geometry_versions.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the CaseSpec document (weldsim_hpc.case)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(back_populates="cases")
    geometry_version: Mapped[GeometryVersion | None] = relationship()
    runs: Mapped[list[Run]] = relationship(
        back_populates="case", cascade="all, delete-orphan", passive_deletes=True)

    def __repr__(self) -> str:
        return f"<SimulationCase {self.id} {self.name!r} project={self.project_id}>"
