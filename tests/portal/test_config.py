"""Settings: laptop defaults in the instance folder, environment and mapping overrides."""

from __future__ import annotations

import os
import stat

import pytest

from portal import create_app, current_settings
from portal.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No WELDSIM_* of the machine running the tests leaks into them."""
    for key in [k for k in os.environ if k.startswith("WELDSIM_")]:
        monkeypatch.delenv(key)


def test_defaults_live_in_the_instance_folder(tmp_path):
    settings = load_settings(tmp_path, env={})
    assert settings.instance_path == tmp_path
    assert settings.database_url == f"sqlite:///{tmp_path / 'weldsim.db'}"
    assert settings.is_sqlite
    assert settings.runs_root == tmp_path / "runs"
    assert settings.storage_root == tmp_path / "storage"
    assert settings.executor == "local"
    assert settings.sqlite_busy_timeout_ms == 10_000


def test_secret_key_is_generated_once_with_mode_600_and_reused(tmp_path):
    first = load_settings(tmp_path / "inst", env={}).secret_key
    key_file = tmp_path / "inst" / "secret_key"
    assert len(first) == 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == first
    assert load_settings(tmp_path / "inst", env={}).secret_key == first
    assert load_settings(tmp_path / "other", env={}).secret_key != first


def test_a_given_secret_key_writes_no_file(tmp_path):
    assert load_settings(tmp_path, env={"WELDSIM_SECRET_KEY": "from-env"}).secret_key == "from-env"
    assert load_settings(tmp_path, {"SECRET_KEY": "from-config"}, env={}).secret_key == "from-config"
    assert not (tmp_path / "secret_key").exists()


def test_environment_overrides_defaults(tmp_path):
    env = {"WELDSIM_DATABASE_URL": "postgresql://weldsim:pw@db.example:5432/weldsim",
           "WELDSIM_RUNS_ROOT": str(tmp_path / "scratch" / "runs"),
           "WELDSIM_STORAGE_ROOT": str(tmp_path / "store"),
           "WELDSIM_EXECUTOR": "SLURM", "WELDSIM_SECRET_KEY": "s", "WELDSIM_SQLITE_BUSY_TIMEOUT_MS": "500",
           "WELDSIM_SLURM_PARTITION": "debug"}  # the executors' settings are not the portal's: ignored
    settings = load_settings(tmp_path, env=env)
    assert settings.database_url == "postgresql+psycopg://weldsim:pw@db.example:5432/weldsim"
    assert not settings.is_sqlite
    assert settings.runs_root == tmp_path / "scratch" / "runs"
    assert settings.storage_root == tmp_path / "store"
    assert settings.executor == "slurm"
    assert settings.sqlite_busy_timeout_ms == 500
    assert "pw" not in repr(settings) and "'s'" not in repr(settings)


def test_mapping_overrides_environment(tmp_path):
    settings = load_settings(tmp_path, {"EXECUTOR": "local", "DATABASE_URL": "sqlite:///portal.db"},
                             env={"WELDSIM_EXECUTOR": "slurm", "WELDSIM_SECRET_KEY": "s"})
    assert settings.executor == "local"
    assert settings.database_url == f"sqlite:///{tmp_path / 'portal.db'}"  # relative: in the instance folder


@pytest.mark.parametrize("env, overrides, message", [
    ({"WELDSIM_EXECUTOR": "pbs"}, {}, "environment variable WELDSIM_EXECUTOR: unknown executor 'pbs'"),
    ({}, {"DATABASE_URL": "not a url"}, "setting DATABASE_URL: 'not a url' is not a database URL"),
    ({"WELDSIM_SQLITE_BUSY_TIMEOUT_MS": "soon"}, {}, "WELDSIM_SQLITE_BUSY_TIMEOUT_MS: 'soon' is not a whole"),
    ({}, {"RUNSROOT": "/x"}, "unknown portal setting 'RUNSROOT'"),
])
def test_invalid_settings_name_their_source(tmp_path, env, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, overrides, env={"WELDSIM_SECRET_KEY": "s", **env})


def test_create_app_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WELDSIM_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("WELDSIM_RUNS_ROOT", str(tmp_path / "runs"))
    monkeypatch.setenv("WELDSIM_EXECUTOR", "slurm")
    app = create_app({"TESTING": True})
    assert app.instance_path == str(tmp_path / "instance")
    assert app.config["TESTING"] is True
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'instance' / 'weldsim.db'}"
    with app.app_context():
        settings = current_settings()
    assert settings.runs_root == tmp_path / "runs" and settings.executor == "slurm"
    assert app.secret_key == (tmp_path / "instance" / "secret_key").read_text().strip()
    assert create_app().secret_key == app.secret_key  # generated once, then reused


def test_create_app_config_wins_and_refuses_sqlalchemy_uri(monkeypatch, tmp_path):
    monkeypatch.setenv("WELDSIM_DATABASE_URL", "sqlite:///from-env.db")
    app = create_app({"INSTANCE_PATH": tmp_path, "DATABASE_URL": "sqlite:///from-config.db", "SECRET_KEY": "k"})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'from-config.db'}"
    assert app.secret_key == "k"
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        create_app({"INSTANCE_PATH": tmp_path, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
