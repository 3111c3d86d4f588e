"""WeldSim portal: a thin Flask application over weldsim_hpc.

``create_app(config)`` is the application factory (``flask --app portal …`` calls it with
no argument). The app is a flask-openapi3 `OpenAPI` (a Flask subclass): the JSON API
(portal.api, /api/v1) validates requests with pydantic models and generates its OpenAPI
document from them; portal.web serves the log-in form; portal.cli adds ``users`` and
``tokens`` commands. Settings are merged once into a frozen `portal.config.Settings` —
defaults → environment (WELDSIM_*) → `config` — and kept as
``app.extensions["weldsim"]`` (see `current_settings`). Keys of `config` that are not
portal settings (TESTING, SQLALCHEMY_ECHO, …) go to ``app.config`` unchanged.

Example::

    app = create_app({"DATABASE_URL": "sqlite:///:memory:", "SECRET_KEY": "test", "TESTING": True})
    with app.app_context():
        flask_migrate.upgrade()
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app
from flask_openapi3 import OpenAPI

from .config import SETTING_NAMES, ConfigError, Settings, load_settings

#: request bodies above this answer 413 (override with MAX_CONTENT_LENGTH in `config`)
MAX_REQUEST_BYTES = 2 * 1024 * 1024


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the portal app; `config` overrides the environment (see portal.config)."""
    config = dict(config or {})
    if "SQLALCHEMY_DATABASE_URI" in config or "SQLALCHEMY_BINDS" in config:
        raise ConfigError("set the database with DATABASE_URL (or WELDSIM_DATABASE_URL), "
                          "not SQLALCHEMY_DATABASE_URI/SQLALCHEMY_BINDS")
    portal_keys = {k: config.pop(k) for k in SETTING_NAMES if k in config}
    from .api.openapi import app_options

    app = OpenAPI(__name__, instance_path=_explicit_instance_path(portal_keys), **app_options())
    settings = load_settings(app.instance_path, portal_keys)
    app.instance_path = str(settings.instance_path)
    settings.instance_path.mkdir(parents=True, exist_ok=True)

    from . import api, cli, extensions, models, web  # noqa: F401  (models: every table on the metadata)

    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=extensions.engine_options(settings),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        SESSION_COOKIE_NAME="weldsim_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.config.from_mapping(config)
    app.json.sort_keys = False  # answers keep their models' field order
    app.extensions["weldsim"] = settings
    extensions.init_app(app, settings)
    api.init_app(app)
    _init_runs(app)
    web.init_app(app)
    cli.init_app(app)
    return app


def _init_runs(app: Flask) -> None:
    """The runs endpoints (portal.api.runs) and the /ws/runs/<id> progress streams (portal.ws)."""
    from . import ws
    from .api import runs as runs_api

    runs_api.init_app(app)
    ws.init_app(app)


def current_settings() -> Settings:
    """The Settings of the app handling the current request or CLI command."""
    return current_app.extensions["weldsim"]


def _explicit_instance_path(portal_keys: Mapping[str, Any]) -> str | None:
    """INSTANCE_PATH from `config`, else $WELDSIM_INSTANCE_PATH; None → Flask's default."""
    value = portal_keys.get("INSTANCE_PATH") or os.environ.get("WELDSIM_INSTANCE_PATH")
    return os.path.abspath(os.fspath(value)) if value else None
