"""Initial schema: users, projects, geometry, cases, runs and their results, studies, workflows.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-29

Every constraint and index is named as the naming convention in portal/extensions.py
names it, so later batch migrations on SQLite can address them. Timestamps are
timestamptz on PostgreSQL (text in UTC on SQLite); JSON is json on PostgreSQL.
"""
from alembic import op
import sqlalchemy as sa

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

RUN_STATES = "'queued', 'running', 'completed', 'failed', 'cancelled', 'interrupted', 'lost'"
BATCH_STATES = "'draft', 'running', 'completed', 'failed', 'cancelled'"


def _timestamps(*names, nullable=False):
    return [sa.Column(n, sa.DateTime(timezone=True), nullable=nullable) for n in names]


def _id():
    return sa.Column("id", sa.Integer(), nullable=False)


def _fk(table, column, target, ondelete=None):
    """FOREIGN KEY (column) REFERENCES target, named fk_<table>_<column>_<target table>."""
    ref_table = target.split(".")[0]
    return sa.ForeignKeyConstraint([column], [target], name=op.f(f"fk_{table}_{column}_{ref_table}"),
                                   ondelete=ondelete)


def _pk(table, column="id"):
    return sa.PrimaryKeyConstraint(column, name=op.f(f"pk_{table}"))


def _unique(table, *columns):
    return sa.UniqueConstraint(*columns, name=op.f(f"uq_{table}_{'_'.join(columns)}"))


def _check(table, name, sql):
    return sa.CheckConstraint(sql, name=op.f(f"ck_{table}_{name}"))


def _index(table, column):
    op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def upgrade():
    # --- users and their API tokens ---------------------------------------------------
    op.create_table(
        "users",
        _id(),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        *_timestamps("created_at"),
        *_timestamps("last_login_at", nullable=True),
        _pk("users"),
        _unique("users", "email"),
    )
    op.create_table(
        "api_tokens",
        _id(),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        *_timestamps("created_at"),
        *_timestamps("last_used_at", "expires_at", nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        _fk("api_tokens", "user_id", "users.id", ondelete="CASCADE"),
        _pk("api_tokens"),
        _unique("api_tokens", "token_hash"),
    )
    _index("api_tokens", "user_id")

    # --- custom materials ---------------------------------------------------------------
    op.create_table(
        "materials",
        _id(),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("material_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        *_timestamps("created_at", "updated_at"),
        _fk("materials", "owner_id", "users.id", ondelete="CASCADE"),
        _pk("materials"),
        _unique("materials", "owner_id", "material_id"),
    )

    # --- projects, geometry versions, simulation cases ------------------------------------
    op.create_table(
        "projects",
        _id(),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("application_type", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        *_timestamps("created_at", "updated_at"),
        _check("projects", "application_type",
               "application_type IN ('li_battery_tab', 'general_metal', 'horn_design')"),
        _fk("projects", "owner_id", "users.id", ondelete="CASCADE"),
        _pk("projects"),
        _unique("projects", "owner_id", "name"),
    )
    op.create_table(
        "geometry_versions",
        _id(),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("file_path", sa.String(length=1024), nullable=True),
        sa.Column("mesh_info", sa.JSON(), nullable=True),
        *_timestamps("created_at"),
        _check("geometry_versions", "kind_source",
               "(kind = 'parametric' AND params IS NOT NULL) OR (kind = 'uploaded' AND file_path IS NOT NULL)"),
        _check("geometry_versions", "kind", "kind IN ('parametric', 'uploaded')"),
        _check("geometry_versions", "version_positive", "version >= 1"),
        _fk("geometry_versions", "project_id", "projects.id", ondelete="CASCADE"),
        _pk("geometry_versions"),
        _unique("geometry_versions", "project_id", "version"),
    )
    op.create_table(
        "simulation_cases",
        _id(),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("geometry_version_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        *_timestamps("created_at", "updated_at"),
        _fk("simulation_cases", "geometry_version_id", "geometry_versions.id"),  # no action: in use
        _fk("simulation_cases", "project_id", "projects.id", ondelete="CASCADE"),
        _pk("simulation_cases"),
        _unique("simulation_cases", "project_id", "name"),
    )
    _index("simulation_cases", "geometry_version_id")

    # --- comparisons, studies, workflows --------------------------------------------------
    op.create_table(
        "comparisons",
        _id(),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("metric_names", sa.JSON(), nullable=False),
        *_timestamps("created_at", "updated_at"),
        _fk("comparisons", "project_id", "projects.id", ondelete="CASCADE"),
        _pk("comparisons"),
    )
    _index("comparisons", "project_id")
    op.create_table(
        "optimization_studies",
        _id(),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("base_case_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        *_timestamps("created_at", "updated_at"),
        _check("optimization_studies", "kind", "kind IN ('sweep', 'optimization')"),
        _check("optimization_studies", "state", f"state IN ({BATCH_STATES})"),
        _fk("optimization_studies", "base_case_id", "simulation_cases.id", ondelete="CASCADE"),
        _fk("optimization_studies", "project_id", "projects.id", ondelete="CASCADE"),
        _pk("optimization_studies"),
    )
    _index("optimization_studies", "base_case_id")
    _index("optimization_studies", "project_id")
    op.create_table(
        "workflows",
        _id(),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("dag", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        *_timestamps("created_at", "updated_at"),
        _check("workflows", "state", f"state IN ({BATCH_STATES})"),
        _fk("workflows", "project_id", "projects.id", ondelete="CASCADE"),
        _pk("workflows"),
    )
    _index("workflows", "project_id")

    # --- runs and their results -------------------------------------------------------------
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(length=12), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("submitted_by_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("executor", sa.String(length=16), nullable=False),
        sa.Column("ntasks", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("scheduler_job_ids", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("progress_percent", sa.Float(), nullable=False),
        sa.Column("phase", sa.String(length=64), nullable=True),
        sa.Column("compute_time_s", sa.Float(), nullable=True),
        *_timestamps("submitted_at"),
        *_timestamps("started_at", "finished_at", nullable=True),
        _check("runs", "executor", "executor IN ('local', 'slurm')"),
        _check("runs", "state", f"state IN ({RUN_STATES})"),
        _check("runs", "attempts_non_negative", "attempts >= 0"),
        _check("runs", "run_id_length", "length(run_id) = 12"),
        _check("runs", "ntasks_positive", "ntasks >= 1"),
        _check("runs", "progress_range", "progress_percent >= 0 AND progress_percent <= 100"),
        _fk("runs", "case_id", "simulation_cases.id", ondelete="CASCADE"),
        _fk("runs", "project_id", "projects.id", ondelete="CASCADE"),
        _fk("runs", "study_id", "optimization_studies.id", ondelete="SET NULL"),
        _fk("runs", "submitted_by_id", "users.id", ondelete="SET NULL"),
        _pk("runs", "run_id"),
    )
    for column in ("case_id", "project_id", "state", "study_id", "submitted_by_id"):
        _index("runs", column)
    op.create_table(
        "artifacts",
        _id(),
        sa.Column("run_id", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        *_timestamps("created_at"),
        _fk("artifacts", "run_id", "runs.run_id", ondelete="CASCADE"),
        _pk("artifacts"),
        _unique("artifacts", "run_id", "path"),
    )
    op.create_table(
        "metrics",
        _id(),
        sa.Column("run_id", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        _fk("metrics", "run_id", "runs.run_id", ondelete="CASCADE"),
        _pk("metrics"),
        _unique("metrics", "run_id", "name"),
    )
    _index("metrics", "name")
    op.create_table(
        "comparison_results",
        _id(),
        sa.Column("comparison_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=12), nullable=False),
        sa.Column("is_baseline", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        *_timestamps("computed_at"),
        _fk("comparison_results", "comparison_id", "comparisons.id", ondelete="CASCADE"),
        _fk("comparison_results", "run_id", "runs.run_id", ondelete="CASCADE"),
        _pk("comparison_results"),
        _unique("comparison_results", "comparison_id", "run_id"),
    )
    _index("comparison_results", "run_id")


def downgrade():
    # children before parents; dropping a table drops its indexes
    for table in ("comparison_results", "metrics", "artifacts", "runs", "workflows",
                  "optimization_studies", "comparisons", "simulation_cases", "geometry_versions",
                  "projects", "materials", "api_tokens", "users"):
        op.drop_table(table)
