"""`flask --app portal users create EMAIL [--admin]` and `tokens create`, in-process and as
the real command."""

from __future__ import annotations

import os
import subprocess
import sys

from portal.extensions import db
from portal.models import User
from portal.services import accounts

from .conftest import make_app


def test_users_create_prompts_for_the_password_twice(web_app):
    runner = web_app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "Eng@Example.com", "--admin"],
                           input="a long password\na long password\n")
    assert result.exit_code == 0, result.output
    assert "created admin user eng@example.com" in result.output
    assert "a long password" not in result.output  # hidden input
    with web_app.app_context():
        user = db.session.query(User).filter_by(email="eng@example.com").one()
        assert user.is_admin
        assert accounts.authenticate(db.session, "eng@example.com", "a long password") == user
        db.session.remove()


def test_users_create_refuses_mismatches_short_passwords_and_duplicates(web_app):
    runner = web_app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "eng@example.com"], input="first one!\nsecond one\n"
                                                                             "short\nshort\n")
    assert result.exit_code != 0 and "do not match" in result.output
    assert "at least 8 characters" in result.output
    runner.invoke(args=["users", "create", "eng@example.com"], input="a long password\na long password\n")
    again = runner.invoke(args=["users", "create", "eng@example.com"], input="a long password\na long password\n")
    assert again.exit_code == 1 and "exists already" in again.output


def test_tokens_create_prints_a_working_token(web_app):
    runner = web_app.test_cli_runner()
    runner.invoke(args=["users", "create", "eng@example.com"], input="a long password\na long password\n")
    result = runner.invoke(args=["tokens", "create", "eng@example.com", "--name", "laptop", "--expires-days", "30"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("wsk_") and "\n" not in token and "not shown again" in result.stderr
    response = web_app.test_client().get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.get_json()["user"]["email"] == "eng@example.com"
    missing = runner.invoke(args=["tokens", "create", "nobody@example.com"])
    assert missing.exit_code == 1 and "no user nobody@example.com" in missing.output
    listed = runner.invoke(args=["users", "list"])
    assert "eng@example.com" in listed.output


def test_the_real_commands(sqlite_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WELDSIM_")}
    env.update(WELDSIM_DATABASE_URL=sqlite_url, WELDSIM_INSTANCE_PATH=str(tmp_path), WELDSIM_SECRET_KEY="s")

    def flask(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flask", "--app", "portal", *args], input=stdin, env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)

    try:
        made = flask("users", "create", "ops@example.com", "--admin", stdin="a long password\na long password\n")
        assert made.returncode == 0, made.stderr
        token = flask("tokens", "create", "ops@example.com")
        assert token.returncode == 0 and token.stdout.strip().startswith("wsk_"), token.stderr
        app = make_app(sqlite_url, tmp_path / "app")
        response = app.test_client().get("/api/v1/projects",
                                          headers={"Authorization": f"Bearer {token.stdout.strip()}"})
        assert response.status_code == 200
    finally:
        app = make_app(sqlite_url, tmp_path / "cleanup")
        with app.app_context():
            db.session.query(User).delete()
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
