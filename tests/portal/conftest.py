"""Fixtures of the portal tests: migrated SQLite and PostgreSQL databases, and apps on them.

PostgreSQL: every test session creates its own databases (weldsim_test_<random>) through
the admin URL $WELDSIM_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test)
and drops them at the end. SQLite: files under pytest's tmp directory. Both are brought to
the newest revision by the real CLI, ``flask --app portal db upgrade``, in a subprocess
with WELDSIM_DATABASE_URL set, from a directory outside the repository.

`migrated_url` runs a test once per backend; `db_session` gives the app's session and
deletes every user afterwards (which, by ON DELETE CASCADE, empties every table).
`web_app` is an app for HTTP tests that holds no app context open (each request gets its
own, as in production); `alice`, `bob` and `admin` are users of it with bearer-token
clients (tests/portal/helpers.py).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from portal import create_app
from portal.extensions import db

ADMIN_URL = os.environ.get("WELDSIM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def flask_db(args: list[str], database_url: str, instance: Path) -> subprocess.CompletedProcess:
    """Run `flask --app portal db <args>` against `database_url`; fail with its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WELDSIM_")}
    env.update(WELDSIM_DATABASE_URL=database_url, WELDSIM_INSTANCE_PATH=str(instance),
               WELDSIM_SECRET_KEY="test-secret")
    proc = subprocess.run([sys.executable, "-m", "flask", "--app", "portal", "db", *args],
                          cwd=instance, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"flask db {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def new_postgres_database() -> Iterator:
    """A function making a fresh, empty PostgreSQL database; returns its SQLAlchemy URL."""
    admin_url = make_url(ADMIN_URL)
    made: list[str] = []
    with psycopg.connect(admin_url.set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as admin:

        def create() -> str:
            name = f"weldsim_test_{secrets.token_hex(6)}"
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            made.append(name)
            return admin_url.set(drivername="postgresql+psycopg", database=name) \
                .render_as_string(hide_password=False)

        try:
            yield create
        finally:
            for name in made:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def postgres_url(new_postgres_database, tmp_path_factory) -> str:
    url = new_postgres_database()
    flask_db(["upgrade"], url, tmp_path_factory.mktemp("pg-instance"))
    return url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    instance = tmp_path_factory.mktemp("sqlite-instance")
    url = f"sqlite:///{instance / 'portal.db'}"
    flask_db(["upgrade"], url, instance)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def migrated_url(request) -> str:
    """The URL of a database upgraded to head, once per backend."""
    return request.getfixturevalue(f"{request.param}_url")


def make_app(database_url: str, instance: Path, **extra):
    return create_app({"DATABASE_URL": database_url, "INSTANCE_PATH": instance,
                       "SECRET_KEY": "test-secret", "TESTING": True, **extra})


@pytest.fixture
def app(migrated_url, tmp_path):
    app = make_app(migrated_url, tmp_path / "instance")
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def db_session(app):
    from portal.models import User

    try:
        yield db.session
    finally:
        db.session.rollback()
        db.session.execute(delete(User))
        db.session.commit()


@pytest.fixture
def web_app(migrated_url, tmp_path):
    """An app for HTTP tests: no app context held open, so each request gets its own
    (as in production); every user is deleted afterwards."""
    app = make_app(migrated_url, tmp_path / "instance")
    try:
        yield app
    finally:
        dispose_app(app)


def dispose_app(app) -> None:
    """After a test app: every user deleted (the rest cascades), sessions and engine closed."""
    from portal.models import User

    with app.app_context():
        db.session.rollback()
        db.session.execute(delete(User))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def alice(web_app):
    from .helpers import api_client

    return api_client(web_app, "alice@example.com")


@pytest.fixture
def bob(web_app):
    from .helpers import api_client

    return api_client(web_app, "bob@example.com")


@pytest.fixture
def admin(web_app):
    from .helpers import api_client

    return api_client(web_app, "admin@example.com", admin=True)
