"""Migrations: one schema on SQLite and PostgreSQL, equal to the models, reversible."""

from __future__ import annotations

import flask_migrate
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from portal.extensions import db

from .conftest import make_app

TABLES = {"users", "api_tokens", "projects", "geometry_versions", "simulation_cases", "runs",
          "artifacts", "metrics", "comparisons", "comparison_results", "optimization_studies",
          "materials", "workflows"}

# most specific first: Text before String, BigInteger before Integer, Float before Numeric
GENERIC_TYPES = (sa.Boolean, sa.DateTime, sa.Date, sa.JSON, sa.LargeBinary, sa.Text, sa.String,
                 sa.BigInteger, sa.Integer, sa.Float, sa.Numeric)


def generic(type_: sa.types.TypeEngine) -> str:
    for cls in GENERIC_TYPES:
        if isinstance(type_, cls):
            return cls.__name__
    raise AssertionError(f"no generic class for reflected type {type_!r}")


def schema_of(url: str) -> dict:
    """Everything the inspector says about the schema, in backend-neutral terms."""
    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        out = {}
        for table in sorted(insp.get_table_names()):
            pk = insp.get_pk_constraint(table)
            out[table] = {
                "columns": {c["name"]: (generic(c["type"]), c["nullable"],
                                        getattr(c["type"], "length", None) if generic(c["type"]) == "String" else None)
                            for c in insp.get_columns(table)},
                "pk": (pk["name"], tuple(pk["constrained_columns"])),
                "fks": sorted((fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"],
                               tuple(fk["referred_columns"]),
                               (fk["options"].get("ondelete") or "NO ACTION").upper())
                              for fk in insp.get_foreign_keys(table)),
                "uniques": sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)),
                # PostgreSQL also lists the index behind each unique constraint; that is the constraint
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in insp.get_indexes(table) if not i.get("duplicates_constraint")),
                "checks": sorted(c["name"] for c in insp.get_check_constraints(table)),
            }
        return out
    finally:
        engine.dispose()


def test_sqlite_and_postgresql_have_the_same_schema(sqlite_url, postgres_url):
    lite, pg = schema_of(sqlite_url), schema_of(postgres_url)
    assert set(lite) == TABLES | {"alembic_version"}
    for table in sorted(TABLES):
        for part in ("columns", "pk", "fks", "uniques", "indexes", "checks"):
            assert lite[table][part] == pg[table][part], f"{table}.{part} differs"
    assert lite == pg


def test_schema_has_the_promised_keys(sqlite_url):
    schema = schema_of(sqlite_url)
    assert ("uq_metrics_run_id_name", ("run_id", "name")) in schema["metrics"]["uniques"]
    assert ("pk_runs", ("run_id",)) == schema["runs"]["pk"]
    assert schema["runs"]["columns"]["run_id"] == ("String", False, 12)
    assert ("fk_metrics_run_id_runs", ("run_id",), "runs", ("run_id",), "CASCADE") in schema["metrics"]["fks"]
    assert "ck_runs_state" in schema["runs"]["checks"]
    assert schema["runs"]["columns"]["submitted_at"] == ("DateTime", False, None)
    assert schema["runs"]["columns"]["scheduler_job_ids"] == ("JSON", False, None)


def test_no_pending_autogenerate_diff(app):
    """The models and the revisions agree: `flask db migrate` would write nothing."""
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True,
                                                     "render_as_batch": True})
        diff = compare_metadata(ctx, db.metadata)
    assert diff == []


def test_one_head_and_it_is_applied(app):
    script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
    heads = script.get_heads()
    assert len(heads) == 1, f"several heads {heads}: merge them (flask db merge)"
    with db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == tuple(heads)


def _downgrade_and_upgrade(url, tmp_path):
    app = make_app(url, tmp_path / "instance")
    with app.app_context():
        try:
            flask_migrate.upgrade()
            assert TABLES <= set(sa.inspect(db.engine).get_table_names())
            flask_migrate.downgrade(revision="base")
            assert set(sa.inspect(db.engine).get_table_names()) == {"alembic_version"}
            flask_migrate.upgrade()
            assert TABLES <= set(sa.inspect(db.engine).get_table_names())
        finally:
            db.engine.dispose()


def test_downgrade_to_base_and_back_on_sqlite(tmp_path):
    _downgrade_and_upgrade(f"sqlite:///{tmp_path / 'roundtrip.db'}", tmp_path)


def test_downgrade_to_base_and_back_on_postgresql(new_postgres_database, tmp_path):
    _downgrade_and_upgrade(new_postgres_database(), tmp_path)
