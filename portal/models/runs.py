"""Runs and what they produced: artifacts (files) and metrics (numbers).

A run's primary key is its run id — the 12-character name of its run directory
(weldsim_hpc.run_paths) — so the database, the URL, the WebSocket and the directory all
use one identifier; ``Metric.run_id`` and ``Artifact.run_id`` hold that text too.

The row mirrors the run directory, which stays the source of truth: ``attempts`` and
``scheduler_job_ids`` follow attempts.json (one Slurm job id per attempt, [] for local
runs), ``state`` follows the executor (RunState), ``progress_percent`` the last progress row.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import (JSON, BigInteger, CheckConstraint, Float, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from weldsim_hpc.run_paths import RUN_ID_LENGTH, validate_run_id

from ..extensions import db
from .types import EXECUTORS, RunState, UTCDateTime, choice, one_of, utcnow

if TYPE_CHECKING:
    from .projects import Project, SimulationCase
    from .studies import OptimizationStudy
    from .users import User


class Run(db.Model):
    __tablename__ = "runs"
    __table_args__ = (
        one_of("state", RunState),
        one_of("executor", EXECUTORS),
        CheckConstraint(f"length(run_id) = {RUN_ID_LENGTH}", name="run_id_length"),
        CheckConstraint("ntasks >= 1", name="ntasks_positive"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        CheckConstraint("progress_percent >= 0 AND progress_percent <= 100", name="progress_range"),
    )

    run_id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("simulation_cases.id", ondelete="CASCADE"), index=True)
    study_id: Mapped[int | None] = mapped_column(
        ForeignKey("optimization_studies.id", ondelete="SET NULL"), index=True)
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=RunState.QUEUED.value, index=True)
    executor: Mapped[str] = mapped_column(String(16), default="local")
    ntasks: Mapped[int] = mapped_column(Integer, default=1)  # MPI ranks
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    scheduler_job_ids: Mapped[list[str]] = mapped_column(JSON, default=list)  # one per attempt (Slurm)
    reason: Mapped[str | None] = mapped_column(Text)  # why it failed, was cancelled or lost
    exit_code: Mapped[int | None] = mapped_column(Integer)  # of the entry point's last attempt
    progress_percent: Mapped[float] = mapped_column(Float, default=0.0)
    phase: Mapped[str | None] = mapped_column(String(64))  # last progress phase
    compute_time_s: Mapped[float | None] = mapped_column(Float)
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    project: Mapped[Project] = relationship(back_populates="runs")
    case: Mapped[SimulationCase] = relationship(back_populates="runs")
    study: Mapped[OptimizationStudy | None] = relationship(back_populates="runs")
    submitted_by: Mapped[User | None] = relationship()
    metrics: Mapped[list[Metric]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, order_by="Metric.name")
    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, order_by="Artifact.path")

    @validates("run_id")
    def _check_run_id(self, _key: str, value: str) -> str:
        return validate_run_id(value)

    @validates("state")
    def _check_state(self, key: str, value: Any) -> str:
        return choice(value, RunState, key)

    @validates("executor")
    def _check_executor(self, key: str, value: str) -> str:
        if value not in EXECUTORS:
            raise ValueError(f"{key}: {value!r} is not one of {', '.join(EXECUTORS)}")
        return value

    @property
    def run_state(self) -> RunState:
        return RunState(self.state)

    def __repr__(self) -> str:
        return f"<Run {self.run_id} {self.state} case={self.case_id}>"


class Artifact(db.Model):
    """A file of a run directory the portal offers: `path` is relative to the run directory."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # e.g. fields_xdmf, fields_pvd, mesh, log, provenance
    path: Mapped[str] = mapped_column(String(512))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    run: Mapped[Run] = relationship(back_populates="artifacts")

    @validates("path")
    def _check_path(self, key: str, value: str) -> str:
        parts = value.replace("\\", "/").split("/")
        if not value or value.startswith("/") or ".." in parts:
            raise ValueError(f"{key}: {value!r} must be a relative path inside the run directory")
        return value

    def __repr__(self) -> str:
        return f"<Artifact {self.run_id}/{self.path} ({self.kind})>"


class Metric(db.Model):
    """One entry of results/metrics.json: name (from weldsim_hpc's registry), value, SI unit."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128), index=True)  # e.g. f_working_Hz, probe.tip.T_K
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(32), default="")

    run: Mapped[Run] = relationship(back_populates="metrics")

    def __repr__(self) -> str:
        return f"<Metric {self.run_id} {self.name}={self.value} {self.unit}>"
