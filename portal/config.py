"""Portal settings: merged once, frozen.

Sources, later ones win::

    defaults  →  environment (WELDSIM_<NAME>)  →  the mapping given to create_app (<NAME>)

| name (env var WELDSIM_<NAME>) | default                      | meaning                                   |
|-------------------------------|------------------------------|-------------------------------------------|
| DATABASE_URL                  | sqlite:///<instance>/weldsim.db | SQLAlchemy URL; postgresql://… uses psycopg 3 |
| SECRET_KEY                    | generated once, kept in <instance>/secret_key (mode 600) | Flask session signing |
| RUNS_ROOT                     | <instance>/runs              | one directory per run (the executors' runs root) |
| STORAGE_ROOT                  | <instance>/storage           | uploaded geometry and other user files    |
| EXECUTOR                      | local                        | local (dask on this machine) or slurm     |
| SQLITE_BUSY_TIMEOUT_MS        | 10000                        | how long SQLite waits for a lock (ms)     |
| MAX_UPLOAD_BYTES              | 104857600 (100 MiB)          | largest geometry upload (STEP, .msh)      |
| INSTANCE_PATH                 | Flask's instance folder      | where the defaults above live             |

The laptop default needs nothing: SQLite in the Flask instance folder and the local
executor. Production switches by configuration only, e.g.
``WELDSIM_DATABASE_URL=postgresql://weldsim@db/weldsim WELDSIM_EXECUTOR=slurm``.

Example::

    settings = load_settings("/srv/weldsim/instance", env={"WELDSIM_EXECUTOR": "slurm"})
    settings.runs_root      # PosixPath('/srv/weldsim/instance/runs')
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from weldsim_hpc.errors import WeldSimError

ENV_PREFIX = "WELDSIM_"
EXECUTORS = ("local", "slurm")
SECRET_KEY_FILE = "secret_key"
SQLITE_FILE = "weldsim.db"
#: the names a settings source may set (env: WELDSIM_<NAME>, create_app mapping: <NAME>)
SETTING_NAMES = ("DATABASE_URL", "SECRET_KEY", "RUNS_ROOT", "STORAGE_ROOT", "EXECUTOR",
                 "SQLITE_BUSY_TIMEOUT_MS", "INSTANCE_PATH", "MAX_UPLOAD_BYTES")
DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024


class ConfigError(WeldSimError):
    """A portal setting is invalid; the message names the source (env var or key) and the fix."""


@dataclass(frozen=True)
class Settings:
    """The portal's merged settings. Paths are absolute; the URL is normalised."""

    instance_path: Path
    database_url: str = field(repr=False)
    secret_key: str = field(repr=False)
    runs_root: Path
    storage_root: Path
    executor: str = "local"
    sqlite_busy_timeout_ms: int = 10_000
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "sqlite"

    @property
    def database_url_safe(self) -> str:
        """The database URL with its password masked (for logs and `repr`)."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return (f"Settings(instance_path={str(self.instance_path)!r}, database_url={self.database_url_safe!r}, "
                f"runs_root={str(self.runs_root)!r}, storage_root={str(self.storage_root)!r}, "
                f"executor={self.executor!r}, sqlite_busy_timeout_ms={self.sqlite_busy_timeout_ms})")


def normalise_database_url(text: str, instance_path: Path, source: str) -> str:
    """Parse a SQLAlchemy URL; map postgres(ql):// to psycopg 3; anchor relative SQLite files.

    A relative SQLite path (``sqlite:///weldsim.db``) is taken relative to the instance
    folder, as Flask-SQLAlchemy does, so the CLI and the app open the same file.
    """
    try:
        url: URL = make_url(text)
    except ArgumentError:
        raise ConfigError(f"{source}: {text!r} is not a database URL "
                          "(e.g. sqlite:///weldsim.db or postgresql://user@host/dbname)") from None
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    elif url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not url.database.startswith("file:") and not os.path.isabs(url.database):
        url = url.set(database=str(instance_path / url.database))
    return url.render_as_string(hide_password=False)


def _secret_key_from_instance(instance_path: Path) -> str:
    """Read <instance>/secret_key, creating it (mode 600, exclusively) on first use."""
    path = instance_path / SECRET_KEY_FILE
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made earlier, or by another process just now
        stored = path.read_text(encoding="ascii").strip()
        if not stored:
            raise ConfigError(f"{path} is empty: delete it to have a new secret key generated, "
                              "or set WELDSIM_SECRET_KEY") from None
        return stored
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    return key


def _absolute(value: Any, source: str) -> Path:
    text = os.fspath(value)
    if not text:
        raise ConfigError(f"{source}: empty path")
    return Path(text).expanduser().absolute()


def load_settings(instance_path: str | os.PathLike, overrides: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Merge defaults → env (WELDSIM_<NAME>) → overrides (<NAME>) into a frozen Settings.

    `overrides` holds only the names in SETTING_NAMES (create_app passes the rest to Flask);
    values of None are ignored. The secret key file is read or created only when neither
    source gives a key. `instance_path` is the fallback when INSTANCE_PATH is set nowhere.
    """
    env = os.environ if env is None else env
    raw: dict[str, tuple[Any, str]] = {}  # name -> (value, where it came from)
    for name in SETTING_NAMES:
        if env.get(ENV_PREFIX + name):
            raw[name] = (env[ENV_PREFIX + name], f"environment variable {ENV_PREFIX + name}")
    for name, value in (overrides or {}).items():
        if name not in SETTING_NAMES:
            raise ConfigError(f"unknown portal setting {name!r} (valid: {', '.join(SETTING_NAMES)})")
        if value is not None:
            raw[name] = (value, f"setting {name}")

    instance = _absolute(*raw.get("INSTANCE_PATH", (instance_path, "instance path")))

    def get(name: str, default: Any) -> tuple[Any, str]:
        return raw.get(name, (default, f"default {name}"))

    url, url_src = get("DATABASE_URL", f"sqlite:///{instance / SQLITE_FILE}")
    executor, ex_src = get("EXECUTOR", "local")
    executor = str(executor).strip().lower()
    if executor not in EXECUTORS:
        raise ConfigError(f"{ex_src}: unknown executor {executor!r} (valid: {', '.join(EXECUTORS)})")
    busy, busy_src = get("SQLITE_BUSY_TIMEOUT_MS", 10_000)
    try:
        busy_ms = int(busy)
    except (TypeError, ValueError):
        busy_ms = -1
    if busy_ms < 0:
        raise ConfigError(f"{busy_src}: {busy!r} is not a whole number of milliseconds >= 0")
    upload, upload_src = get("MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)
    try:
        upload_bytes = int(upload)
    except (TypeError, ValueError):
        upload_bytes = 0
    if upload_bytes < 1:
        raise ConfigError(f"{upload_src}: {upload!r} is not a whole number of bytes >= 1")
    runs, runs_src = get("RUNS_ROOT", instance / "runs")
    storage, storage_src = get("STORAGE_ROOT", instance / "storage")
    secret = raw["SECRET_KEY"][0] if "SECRET_KEY" in raw else _secret_key_from_instance(instance)

    return Settings(
        instance_path=instance,
        database_url=normalise_database_url(str(url), instance, url_src),
        secret_key=str(secret),
        runs_root=_absolute(runs, runs_src),
        storage_root=_absolute(storage, storage_src),
        executor=executor,
        sqlite_busy_timeout_ms=busy_ms,
        max_upload_bytes=upload_bytes,
    )
