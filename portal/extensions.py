"""Flask extensions, created unbound here and bound to an app in `init_app`.

Every constraint and index gets its name from one naming convention, so Alembic's batch
migrations (SQLite rebuilds a table to alter it) can find them by name, and SQLite and
PostgreSQL end up with the same names.

SQLite connections get ``journal_mode=WAL`` (readers do not block the writer),
``busy_timeout`` (a writer waits for the lock instead of failing at once),
``synchronous=NORMAL`` (safe with WAL) and ``foreign_keys=ON`` (SQLite ignores foreign
keys, and so ON DELETE CASCADE, without it). Other databases are left as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.orm import DeclarativeBase

if TYPE_CHECKING:
    from flask import Flask

    from .config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()


def _sqlite_pragmas(busy_timeout_ms: int):
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()
    return on_connect


def engine_options(settings: Settings) -> dict[str, Any]:
    """SQLALCHEMY_ENGINE_OPTIONS for the configured database."""
    if settings.is_sqlite:
        return {}
    return {"pool_pre_ping": True}  # a server restart must not leave dead pooled connections


def init_app(app: Flask, settings: Settings) -> None:
    """Bind db and migrate to `app`; on SQLite, install the connection pragmas."""
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True,
                     compare_type=True)
    if settings.is_sqlite:
        with app.app_context():
            for engine in db.engines.values():
                event.listen(engine, "connect", _sqlite_pragmas(settings.sqlite_busy_timeout_ms))
