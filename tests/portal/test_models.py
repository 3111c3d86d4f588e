"""Models on both backends: keys and checks enforced, cascades, UTC timestamps, SQLite pragmas."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import (ApiToken, Artifact, Comparison, ComparisonResult, GeometryVersion, Material,
                           Metric, OptimizationStudy, Project, Run, RunState, SimulationCase, User,
                           Workflow, utcnow)
from weldsim_hpc.run_paths import RunIdError, new_run_id

from .conftest import make_app

ALL_MODELS = (User, ApiToken, Material, Project, GeometryVersion, SimulationCase, Comparison,
              OptimizationStudy, Workflow, Run, Artifact, Metric, ComparisonResult)


def build_tree(session, email: str = "eng@example.com") -> dict:
    """One user with one of everything; returns the objects by name (committed)."""
    user = User(email=email, password_hash="x")
    project = Project(owner=user, name="tab weld", application_type="li_battery_tab")
    geometry = GeometryVersion(project=project, version=1, kind="parametric", params={"n_foils": 20})
    case = SimulationCase(project=project, name="thermal", spec={"analysis": "thermal_steady"},
                          geometry_version=geometry)
    study = OptimizationStudy(project=project, base_case=case, name="sweep", kind="sweep",
                              spec={"parameters": {"pressure_Pa": [1e6, 2e6]}})
    runs = [Run(run_id=new_run_id(), project=project, case=case, study=study, submitted_by=user,
                executor="local", ntasks=2, scheduler_job_ids=[]) for _ in range(2)]
    for run in runs:
        run.metrics.append(Metric(name="T_max_K", value=480.0, unit="K"))
        run.artifacts.append(Artifact(kind="log", path="solver.log", size_bytes=12))
    comparison = Comparison(project=project, name="two runs", metric_names=["T_max_K"])
    comparison.results = [ComparisonResult(run=r, is_baseline=(i == 0), summary={}) for i, r in enumerate(runs)]
    session.add_all([
        user, ApiToken(user=user, name="cli", token_hash=hashlib.sha256(email.encode()).hexdigest()),
        Material(owner=user, material_id="cu_c11000_mine", properties={"density_kg_m3": 8900.0}),
        Workflow(project=project, name="mesh then solve", dag={"steps": []}), comparison,
    ])
    session.commit()
    return {"user": user, "project": project, "geometry": geometry, "case": case, "study": study,
            "runs": runs, "comparison": comparison}


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_metric_name_is_unique_per_run(db_session):
    tree = build_tree(db_session)
    first, second = (r.run_id for r in tree["runs"])
    db_session.add(Metric(run_id=first, name="T_max_K", value=1.0, unit="K"))
    with pytest.raises(IntegrityError):
        db_session.commit()
    db_session.rollback()
    db_session.add(Metric(run_id=second, name="gain", value=3.1, unit=""))  # another name: fine
    db_session.commit()
    assert count(db_session, Metric) == 3


def test_deleting_a_user_deletes_everything_below_it(db_session):
    tree = build_tree(db_session)
    build_tree(db_session, email="other@example.com")
    user_id = tree["user"].id
    db_session.expunge_all()
    db_session.execute(delete(User).where(User.id == user_id))  # the database cascades, not the ORM
    db_session.commit()
    remaining = {m.__name__: count(db_session, m) for m in ALL_MODELS}
    assert remaining == {"User": 1, "ApiToken": 1, "Material": 1, "Project": 1, "GeometryVersion": 1,
                         "SimulationCase": 1, "Comparison": 1, "OptimizationStudy": 1, "Workflow": 1,
                         "Run": 2, "Artifact": 2, "Metric": 2, "ComparisonResult": 2}


def test_deleting_a_run_deletes_its_results_only(db_session):
    tree = build_tree(db_session)
    gone, kept = (r.run_id for r in tree["runs"])
    db_session.expunge_all()
    db_session.execute(delete(Run).where(Run.run_id == gone))
    db_session.commit()
    assert db_session.scalars(select(Metric.run_id)).all() == [kept]
    assert db_session.scalars(select(Artifact.run_id)).all() == [kept]
    assert db_session.scalars(select(ComparisonResult.run_id)).all() == [kept]
    assert count(db_session, Comparison) == 1


def test_deleting_a_study_keeps_its_runs(db_session):
    tree = build_tree(db_session)
    study_id = tree["study"].id
    db_session.expunge_all()
    db_session.execute(delete(OptimizationStudy).where(OptimizationStudy.id == study_id))
    db_session.commit()
    assert db_session.scalars(select(Run.study_id)).all() == [None, None]


def test_a_geometry_version_in_use_cannot_be_deleted(db_session):
    tree = build_tree(db_session)
    geometry_id = tree["geometry"].id
    with pytest.raises(IntegrityError):
        db_session.execute(delete(GeometryVersion).where(GeometryVersion.id == geometry_id))
        db_session.commit()
    db_session.rollback()


def test_check_constraints_hold_against_raw_sql(db_session):
    run_id = build_tree(db_session)["runs"][0].run_id
    for values in ({"state": "finished"}, {"ntasks": 0}, {"progress_percent": 101.0}, {"executor": "pbs"}):
        with pytest.raises(IntegrityError):
            db_session.execute(update(Run).where(Run.run_id == run_id).values(**values))
            db_session.flush()
        db_session.rollback()


def test_validators_name_the_field():
    with pytest.raises(ValueError, match="state: 'finished' is not one of queued"):
        Run(state="finished")
    with pytest.raises(ValueError, match="application_type"):
        Project(application_type="welding")
    with pytest.raises(RunIdError):
        Run(run_id="../etc")
    with pytest.raises(ValueError, match="relative path"):
        Artifact(path="../../etc/passwd")
    assert Run(state=RunState.RUNNING).state == "running"
    assert User(email="  Eng@Example.COM ").email == "eng@example.com"


def test_timestamps_come_back_as_aware_utc(db_session):
    tree = build_tree(db_session)
    run_id = tree["runs"][0].run_id
    started = dt.datetime(2026, 3, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    db_session.execute(update(Run).where(Run.run_id == run_id).values(started_at=started))
    db_session.commit()
    db_session.expunge_all()
    run = db_session.get(Run, run_id)
    assert run.started_at == started and run.started_at.tzinfo == dt.timezone.utc
    assert run.started_at.hour == 6
    assert run.submitted_at.tzinfo == dt.timezone.utc and run.submitted_at <= utcnow()
    assert run.run_state is RunState.QUEUED and run.attempts == 0 and run.scheduler_job_ids == []
    run.finished_at = dt.datetime(2026, 3, 1, 15, 0)  # naive: refused when written
    with pytest.raises(Exception, match="naive datetime"):
        db_session.commit()
    db_session.rollback()


def test_nullable_json_stores_sql_null(db_session):
    tree = build_tree(db_session)
    study_id = tree["study"].id
    tree["study"].result = None
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(OptimizationStudy)
                             .where(OptimizationStudy.id == study_id, OptimizationStudy.result.is_(None))) == 1


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url, tmp_path):
    app = make_app(sqlite_url, tmp_path / "instance", SQLITE_BUSY_TIMEOUT_MS=2500)
    with app.app_context():
        try:
            pragmas = {name: db.session.execute(text(f"PRAGMA {name}")).scalar()
                       for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")}
        finally:
            db.session.remove()
            db.engine.dispose()
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 2500, "foreign_keys": 1, "synchronous": 1}
    # WAL is a property of the file: any other connection sees it too
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_postgresql_engine_gets_no_sqlite_pragmas(postgres_url, tmp_path):
    app = make_app(postgres_url, tmp_path / "instance")
    with app.app_context():
        try:
            assert db.engine.dialect.name == "postgresql"
            assert db.engine.dialect.driver == "psycopg"
            assert db.session.execute(text("SELECT 1")).scalar() == 1
        finally:
            db.session.remove()
            db.engine.dispose()
