"""Geometry versions get a job status: status, error, mesh_path, source_name.

Revision ID: 0002_geometry_status
Revises: 0001_initial
Create Date: 2026-11-29

Generation and meshing run out of process (portal.geometry_jobs), so a version says where
its job stands (generating, generated, meshing, meshed, failed), why it failed, where its
mesh is, and (uploads) the sanitised name of the uploaded file. Rows made before this
revision hold their geometry already: they become 'generated' (or 'meshed' when they are
an uploaded .msh). `status` is added nullable, filled, then made NOT NULL, so that no
server default is left in the schema (the models set the value in Python).
"""
from alembic import op
import sqlalchemy as sa

revision = "0002_geometry_status"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

STATUSES = "'generating', 'generated', 'meshing', 'meshed', 'failed'"


def upgrade():
    with op.batch_alter_table("geometry_versions") as batch:
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("mesh_path", sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column("source_name", sa.String(length=255), nullable=True))
    op.execute("UPDATE geometry_versions SET status = 'generated'")
    op.execute("UPDATE geometry_versions SET status = 'meshed', mesh_path = file_path "
               "WHERE kind = 'uploaded' AND lower(file_path) LIKE '%.msh'")
    with op.batch_alter_table("geometry_versions") as batch:
        batch.alter_column("status", existing_type=sa.String(length=16), nullable=False)
        batch.create_check_constraint(op.f("ck_geometry_versions_status"), f"status IN ({STATUSES})")


def downgrade():
    with op.batch_alter_table("geometry_versions") as batch:
        batch.drop_constraint(op.f("ck_geometry_versions_status"), type_="check")
        batch.drop_column("source_name")
        batch.drop_column("mesh_path")
        batch.drop_column("error")
        batch.drop_column("status")
