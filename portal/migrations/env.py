"""Alembic environment of the portal (run by Flask-Migrate inside the app context).

The database is the app's (WELDSIM_DATABASE_URL or the SQLite default); the options come
from `Migrate(...)` in portal/extensions.py (render_as_batch, compare_type).
"""
import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

config = context.config
# keep loggers configured before (the app's, pytest's): fileConfig disables them otherwise
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

migrate_ext = current_app.extensions["migrate"]
engine = migrate_ext.db.engine
config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
target_metadata = migrate_ext.db.metadata


def render_item(type_, obj, autogen_context):
    """Render the models' own column types as the plain SQLAlchemy types they store.

    A revision must not import the models (they change; a revision must not), so
    UTCDateTime is written as sa.DateTime(timezone=True), the type it stores.
    """
    from portal.models.types import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def process_revision_directives(context_, revision, directives):
    """`flask db migrate` with no schema change writes no empty revision."""
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        logger.info("No changes in schema detected.")


def run_migrations_offline():
    """`flask db upgrade --sql`: print the SQL instead of running it."""
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_item=render_item,
                      **{k: v for k, v in migrate_ext.configure_args.items() if k != "render_item"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    conf_args = dict(migrate_ext.configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args.setdefault("render_item", render_item)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, **conf_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
