"""Comparisons of runs, and optimisation studies (sweeps and optimisations over runs).

A comparison names the runs and metrics to set side by side; its results hold, per run,
the compared metrics and their difference to the baseline run. A study varies the
parameters of a base case; its runs point back to it (``Run.study_id``, SET NULL when the
study is deleted: the runs stay).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from ..extensions import db
from .types import BatchState, StudyKind, UTCDateTime, choice, one_of, utcnow

if TYPE_CHECKING:
    from .projects import Project, SimulationCase
    from .runs import Run


class Comparison(db.Model):
    __tablename__ = "comparisons"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    metric_names: Mapped[list[str]] = mapped_column(JSON, default=list)  # [] = every common metric
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship()
    results: Mapped[list[ComparisonResult]] = relationship(
        back_populates="comparison", cascade="all, delete-orphan", passive_deletes=True)

    def __repr__(self) -> str:
        return f"<Comparison {self.id} {self.name!r}>"


class ComparisonResult(db.Model):
    """One run in a comparison: {metric name: {value, unit, delta, relative_delta}}."""

    __tablename__ = "comparison_results"
    __table_args__ = (UniqueConstraint("comparison_id", "run_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    computed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    comparison: Mapped[Comparison] = relationship(back_populates="results")
    run: Mapped[Run] = relationship()

    def __repr__(self) -> str:
        return f"<ComparisonResult comparison={self.comparison_id} run={self.run_id}>"


class OptimizationStudy(db.Model):
    """A sweep or optimisation: `spec` holds parameters, ranges, objective and budget."""

    __tablename__ = "optimization_studies"
    __table_args__ = (one_of("kind", StudyKind), one_of("state", BatchState))

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    base_case_id: Mapped[int] = mapped_column(ForeignKey("simulation_cases.id", ondelete="CASCADE"),
                                              index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=BatchState.DRAFT.value)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # best point, history
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship()
    base_case: Mapped[SimulationCase] = relationship()
    runs: Mapped[list[Run]] = relationship(back_populates="study", passive_deletes=True)

    @validates("kind")
    def _check_kind(self, key: str, value: Any) -> str:
        return choice(value, StudyKind, key)

    @validates("state")
    def _check_state(self, key: str, value: Any) -> str:
        return choice(value, BatchState, key)

    def __repr__(self) -> str:
        return f"<OptimizationStudy {self.id} {self.name!r} {self.kind} {self.state}>"
