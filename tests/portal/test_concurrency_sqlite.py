"""20 concurrent API clients and the reconciler on SQLite: no 5xx, and the rows add up.

A real threaded werkzeug server (in a thread) serves an app on a fresh migrated SQLite
file; the app hosts the agent, whose reconciler syncs every 0.2 s while two REAL runs of
the tab weld at ci (prepared by gmsh, solved under mpirun) go from queued to completed.
Meanwhile 20 threads — one user and bearer token each — create, list, get and update
projects and cases and list runs over HTTP (urllib), for at least ROUNDS rounds and
until both runs are final (so the load spans the runs' whole life; the runs' owner sees
them go from queued/running to completed in its run lists). Every answer must be 2xx
(none >= 500, no connection dropped), the reconciler must log no error, both runs must
complete, and the table counts must be exactly what the clients created.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from portal.agent_host import start_host
from portal.extensions import db
from portal.services import accounts

from ..executors._local_helpers import tracker  # noqa: F401
from .conftest import flask_db, make_app
from .helpers import ApiClient, make_user, table_counts, thermal_spec
from .runs_helpers import LiveServer, final_row, tab_weld_spec

pytestmark = pytest.mark.timeout(400)

CLIENTS = 20
ROUNDS = 5
MAX_ROUNDS = 100  # at most one page of projects (per_page=100)


@pytest.fixture
def sqlite_app(tmp_path, tracker):  # noqa: F811
    instance = tmp_path / "instance"
    instance.mkdir()
    url = f"sqlite:///{instance / 'portal.db'}"
    flask_db(["upgrade"], url, instance)
    app = make_app(url, instance)
    tracker.roots.append(app.extensions["weldsim"].runs_root)
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def call(base: str, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:500]


def client_work(base: str, token: str, n: int, record: list, made: dict, states: set,
                runs_done: threading.Event) -> None:
    """Rounds of create/list/get/update on projects and cases, and run lists: at least
    ROUNDS, and until `runs_done`. made[n]: the projects (= cases) it created."""

    def do(method: str, path: str, body: dict | None = None, want: int = 200) -> Any:
        try:
            status, answer = call(base, token, method, path, body)
        except Exception as exc:  # a dropped connection counts as a failure too
            record.append((n, method, path, repr(exc)))
            return None
        if status != want:
            record.append((n, method, path, status, answer))
            return None
        return answer

    made[n] = 0
    i = 0
    while (i < ROUNDS or not runs_done.is_set()) and i < MAX_ROUNDS:
        project = do("POST", "/api/v1/projects", {"name": f"c{n}-p{i}", "application_type": "horn_design"}, 201)
        i += 1
        do("GET", "/api/v1/projects?per_page=5")
        listed = do("GET", "/api/v1/runs")
        if listed is not None:
            states.update(r["state"] for r in listed["items"])
        if project is None:
            continue
        made[n] += 1
        p = project["id"]
        do("GET", f"/api/v1/projects/{p}")
        do("PATCH", f"/api/v1/projects/{p}", {"description": f"round {i}"})
        case = do("POST", f"/api/v1/projects/{p}/cases", {"name": "case", "spec": thermal_spec()}, 201)
        do("GET", f"/api/v1/projects/{p}/cases")
        do("GET", f"/api/v1/projects/{p}/runs")
        if case is not None:
            do("GET", f"/api/v1/projects/{p}/cases/{case['id']}")
            do("PATCH", f"/api/v1/projects/{p}/cases/{case['id']}", {"description": "checked"})
    listed = do("GET", "/api/v1/runs")  # after the runs ended: the last round may have listed them before
    if listed is not None:
        states.update(r["state"] for r in listed["items"])


def test_twenty_clients_and_the_reconciler_give_no_5xx(sqlite_app, caplog):
    app = sqlite_app
    caplog.set_level(logging.WARNING)
    with app.app_context():
        try:
            tokens = []
            for n in range(CLIENTS):
                user = make_user(db.session, f"user{n}@example.com")
                tokens.append(accounts.create_token(db.session, user, "load")[1])
        finally:
            db.session.remove()
    host = start_host(app, reconcile_s=0.2, hub_poll_s=0.2)
    try:
        owner = ApiClient(app, tokens[0])
        project = owner.post("/api/v1/projects", json={"name": "Tabs", "application_type": "li_battery_tab"})
        case = owner.post(f"/api/v1/projects/{project.get_json()['id']}/cases",
                          json={"name": "tab", "spec": tab_weld_spec()})
        assert case.status_code == 201, case.get_json()
        submit = f"/api/v1/projects/{project.get_json()['id']}/cases/{case.get_json()['id']}/runs"
        run_ids = []
        for _ in range(2):
            answer = owner.post(submit, json={"ranks": 1})
            assert answer.status_code == 202, answer.get_json()
            run_ids.append(answer.get_json()["run_id"])

        failures: list = []
        made: dict[int, int] = {}
        states: set[str] = set()  # the run states client 0 (the runs' owner) saw
        runs_done = threading.Event()
        with LiveServer(app) as server:
            threads = [threading.Thread(target=client_work, name=f"client-{n}",
                                        args=(server.origin, tokens[n], n, failures, made,
                                              states if n == 0 else set(), runs_done))
                       for n in range(CLIENTS)]
            for t in threads:
                t.start()
            try:
                rows = [final_row(app, run_id, timeout=300) for run_id in run_ids]
            finally:
                runs_done.set()
                for t in threads:
                    t.join(300)
            assert not any(t.is_alive() for t in threads), "a client hung"
        assert failures == [], failures[:10]
        assert [r["state"] for r in rows] == ["completed", "completed"], [r["reason"] for r in rows]
        assert "completed" in states and states & {"queued", "running"}, states  # the load spanned the runs
    finally:
        host.stop()

    counts = table_counts(app)
    assert all(made[n] >= ROUNDS for n in range(CLIENTS)), made
    assert counts["projects"] == sum(made.values()) + 1
    assert counts["simulation_cases"] == sum(made.values()) + 1
    assert counts["runs"] == 2 and counts["users"] == CLIENTS
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors][:5]
    # each client sees exactly its own
    n = CLIENTS - 1
    last = ApiClient(app, tokens[n]).get("/api/v1/projects?per_page=100").get_json()
    assert last["total"] == made[n] and {p["name"] for p in last["items"]} == {f"c{n}-p{i}" for i in range(made[n])}
