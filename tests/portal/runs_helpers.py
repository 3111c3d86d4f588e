"""Shared by the run tests of the portal: the tab-weld case as a portal case, apps with the
runs API and WebSockets, a real threaded server, WebSocket clients, fake run directories,
and waiting on rows and files.

Never imports mpi4py or dolfinx: real runs are launched by the agent (mpirun).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from simple_websocket import Client, ConnectionClosed
from werkzeug.serving import make_server

from portal.extensions import db
from portal.agent_host import start_host
from portal.models import Run
from weldsim_hpc import materials as lib
from weldsim_hpc.case_io import apply_preset, read_case_data
from weldsim_hpc.executors.record import Resources, RunRecord, write_record
from weldsim_hpc.run_paths import RunPaths, write_json_atomic
from weldsim_hpc.states import RunState

from ..executors._local_helpers import LONG_TIME, THERMAL, Tracker
from .conftest import dispose_app, flask_db, make_app

#: the custom material the tab-weld case takes for its anvil: D2's numbers under another id
CUSTOM_ANVIL = "anvil_d2_mine"


#: long enough (3000 steps, 10 s to 150 s on 2 ranks by machine) to kill and restart the portal twice mid-run
VERY_LONG_TIME = {"end_s": 30.0, "dt_s": 0.01, "checkpoint_every": 100}


def tab_weld_spec(*, long: bool = False, time: dict[str, Any] | None = None,
                  custom_anvil: bool = False) -> dict[str, Any]:
    """examples/tab_weld_cu_al_transient.toml at preset ci (≈10 s on 2 ranks); `long`: 800
    steps (LONG_TIME); `time` replaces time settings; `custom_anvil`: the anvil takes the
    custom material CUSTOM_ANVIL."""
    spec = apply_preset(read_case_data(THERMAL), "ci")
    del spec["name"]  # the portal case's name is the spec's
    if long:
        spec["time"] = {**spec["time"], **LONG_TIME}
    if time:
        spec["time"] = {**spec["time"], **time}
    if custom_anvil:
        spec["materials"] = {**spec["materials"], "anvil": CUSTOM_ANVIL}
    return spec


def d2_properties() -> dict[str, Any]:
    from portal.services.materials import CUSTOM_PROPERTIES

    d2 = lib.builtin_materials()["d2"]
    return {k: getattr(d2, k) for k in CUSTOM_PROPERTIES if getattr(d2, k) is not None}


def runs_app(database_url: str, instance: Path, **extra: Any) -> Flask:
    """create_app with the runs API and the WebSocket route registered (idempotent)."""
    from portal import ws
    from portal.api import runs as runs_api

    app = make_app(database_url, instance, **extra)
    runs_api.init_app(app)
    ws.init_app(app)
    return app


# --- rows ---------------------------------------------------------------------------------------
def row_of(app: Flask, run_id: str) -> dict[str, Any] | None:
    """The Run row as a dict (with metric and artifact counts), read in a fresh session."""
    with app.app_context():
        try:
            run = db.session.get(Run, run_id)
            if run is None:
                return None
            data = {c.name: getattr(run, c.name) for c in Run.__table__.columns}
            data["metrics"] = {m.name: (m.value, m.unit) for m in run.metrics}
            data["artifacts"] = {a.path: (a.kind, a.size_bytes) for a in run.artifacts}
            return data
        finally:
            db.session.remove()


def wait_row(app: Flask, run_id: str, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        row = row_of(app, run_id)
        if row is not None and predicate(row):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for run {run_id} to be {what}; "
                                 f"row: {row and {k: row[k] for k in ('state', 'reason', 'attempts')} }")
        time.sleep(0.2)


def final_row(app: Flask, run_id: str, timeout: float = 240) -> dict:
    return wait_row(app, run_id, lambda r: RunState(r["state"]).is_terminal, timeout, "final")


# --- a real server, real clients -------------------------------------------------------------
class LiveServer:
    """The app on a threaded werkzeug server (127.0.0.1, a free port) in a thread."""

    def __init__(self, app: Flask):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="test-server", daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, run_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/runs/{run_id}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def connect(url: str, *, token: str | None = None, origin: str | None = None,
            headers: dict[str, str] | None = None) -> Client:
    """A WebSocket client; `token` is sent as the first message ({"type": "auth"})."""
    extra = dict(headers or {})
    if origin is not None:
        extra["Origin"] = origin
    client = Client.connect(url, headers=extra)
    if token is not None:
        client.send(json.dumps({"type": "auth", "token": token}))
    return client


def receive_until_end(client: Client, timeout: float) -> list[dict[str, Any]]:
    """Every message until the terminal one (completed/error) and the server's close."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = client.receive(timeout=0.5)
        except ConnectionClosed:
            return messages
        if text is not None:
            messages.append(json.loads(text))
    raise AssertionError(f"no end of the stream within {timeout:.0f} s; got {messages[-3:]}")


def receive_one(client: Client, timeout: float = 10) -> dict[str, Any] | None:
    try:
        text = client.receive(timeout=timeout)
    except ConnectionClosed:
        return None
    return None if text is None else json.loads(text)


def close_code(client: Client, timeout: float = 10) -> int:
    """Wait for the server to close the connection; its close code."""
    deadline = time.monotonic() + timeout
    while client.connected and time.monotonic() < deadline:
        try:
            client.receive(timeout=0.2)
        except ConnectionClosed:
            break
    assert not client.connected, "the server did not close the connection"
    return int(client.close_reason)


# --- files ----------------------------------------------------------------------------------------
def open_fds(path: Path, pid: int | str = "self") -> int:
    """How many file descriptors of process `pid` point at `path`."""
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                count += 1
        except OSError:
            continue
    return count


def fake_run(runs_root: Path, run_id: str, *, state: RunState = RunState.RUNNING, reason: str | None = None,
             cancel_requested: bool = False, resubmissions: int = 0) -> RunPaths:
    """A run directory without a job: case.json, attempts.json and an executor record."""
    paths = RunPaths.for_id(runs_root, run_id)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.results_dir.mkdir(exist_ok=True)
    write_json_atomic(paths.case_json, {"name": "fake"})
    if not paths.attempts_json.exists():
        write_json_atomic(paths.attempts_json, [])
    write_record(paths, RunRecord(run_id=run_id, executor="local", resources=Resources(ntasks=2), state=state,
                                  reason=reason, cancel_requested=cancel_requested, resubmissions=resubmissions))
    return paths


def write_progress(paths: RunPaths, rows: int, final: RunState | None = None, message: str = "",
                   attempt: int = 1):
    """A closed progress.h5 with `rows` progress rows and, if given, a final status row."""
    from weldsim_hpc.checkpoint import ProgressWriter

    writer = ProgressWriter(paths.progress_h5, is_writer=True, run_id=paths.run_id, attempt=attempt,
                            case_hash="c" * 64, mesh_hash="m" * 64)
    for i in range(rows):
        writer.progress(i, 0.1 * i, 100.0 * (i + 1) / (rows + 1), "time_step", f"step {i}", force=True)
    if final is not None:
        writer.status(final, message)
    writer.close()


def add_run_row(session, project_id: int, case_id: int, run_id: str, state: str = "queued",
                submitted_at: dt.datetime | None = None, **fields: Any) -> Run:
    run = Run(run_id=run_id, project_id=project_id, case_id=case_id, state=state, executor="local", ntasks=2,
              attempts=0, scheduler_job_ids=[], **({"submitted_at": submitted_at} if submitted_at else {}),
              **fields)
    session.add(run)
    session.commit()
    return run


@contextlib.contextmanager
def hosted_runs_app(tmp: Path) -> Iterator[Flask]:
    """For module-scoped fixtures with real runs: an app on a SQLite database of its own
    (other tests delete every user of the shared one), migrated, without the caller's
    WELDSIM_* settings, hosting a started agent; stopped, its processes checked and its
    users deleted afterwards."""
    instance = tmp / "instance"
    instance.mkdir()
    url = f"sqlite:///{instance / 'portal.db'}"
    flask_db(["upgrade"], url, instance)
    with pytest.MonkeyPatch.context() as env:
        for key in list(os.environ):
            if key.startswith("WELDSIM_"):
                env.delenv(key)
        env.setenv("WELDSIM_POLL_S", "0.2")
        tracker = Tracker(tmp)
        app = runs_app(url, instance)
        tracker.roots.append(app.extensions["weldsim"].runs_root)
        host = start_host(app, reconcile_s=0.5, hub_poll_s=0.2)
        try:
            yield app
        finally:
            host.stop()
            tracker.teardown()
            dispose_app(app)
