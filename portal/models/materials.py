"""Custom materials of a user, next to weldsim_hpc's built-in library.

``material_id`` is what a CaseSpec names (unique per owner; a service should refuse ids
that shadow a built-in, as weldsim_hpc.materials does); ``properties`` holds the fields of
weldsim_hpc.materials.Material in SI units; ``source`` says where the numbers come from.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import UTCDateTime, utcnow

if TYPE_CHECKING:
    from .users import User


class Material(db.Model):
    __tablename__ = "materials"
    __table_args__ = (UniqueConstraint("owner_id", "material_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    material_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    properties: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship(back_populates="materials")

    def __repr__(self) -> str:
        return f"<Material {self.material_id!r} owner={self.owner_id}>"
