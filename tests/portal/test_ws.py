"""/ws/runs/<id> against a real threaded server (werkzeug, in a thread) and a real client
(simple-websocket), on SQLite and PostgreSQL:

* a REAL run (tab weld at ci with 800 steps, 2 ranks, LocalExecutor): an early client sees every progress
  message and the result; a client joining after the end gets the same history and result;
  two clients share one reader; the reader is closed within 5 s of the run ending;
* without a job (run directories written by the test): ping → pong, the token in the first
  message, no or a wrong token → 1008 after at most 5 s, the session cookie, a foreign
  Origin refused with 403 before the handshake, another user's run → 4404, the reader
  closed within 5 s of the last client leaving;
* the hub's terminal messages: completed, cancelled (the job wrote `interrupted`, the
  record says a cancel was asked), failed, lost (no final row), cancelled before start.
"""

from __future__ import annotations

import http.cookiejar
import json
import time
import urllib.request

import pytest
from simple_websocket import ConnectionError as RefusedError

from portal import ws
from portal.agent_host import hub_of, start_host
from portal.api import runs as runs_api
from portal.extensions import db
from portal.progress_hub import ProgressHub
from portal.services import accounts, cases, projects
from weldsim_hpc.results import read_metrics
from weldsim_hpc.run_paths import RunPaths, new_run_id
from weldsim_hpc.states import RunState

from ..executors._local_helpers import tracker, wait_for  # noqa: F401
from .helpers import PASSWORD, make_user
from .runs_helpers import (VERY_LONG_TIME, LiveServer, add_run_row, close_code, connect, fake_run, final_row, open_fds,
                           receive_one, receive_until_end, tab_weld_spec, write_progress)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def ws_app(web_app):
    runs_api.init_app(web_app)
    ws.init_app(web_app)
    yield web_app
    hub_of(web_app).stop()


@pytest.fixture
def people(ws_app):
    """alice (owner of a project with a long tab-weld case, with a token) and bob (a token)."""
    settings = ws_app.extensions["weldsim"]
    with ws_app.app_context():
        try:
            alice = make_user(db.session, "alice@example.com")
            bob = make_user(db.session, "bob@example.com")
            project = projects.create_project(db.session, alice, name="Tabs", application_type="li_battery_tab")
            case = cases.create_case(db.session, alice, project.id, spec=tab_weld_spec(time=VERY_LONG_TIME), name="tab",
                                     storage_root=settings.storage_root)
            return {"alice": accounts.create_token(db.session, alice, "t")[1],
                    "bob": accounts.create_token(db.session, bob, "t")[1],
                    "alice_id": alice.id, "project_id": project.id, "case_id": case.id}
        finally:
            db.session.remove()


def a_run(app, people, **record) -> RunPaths:
    """A Run row of alice's case and a run directory without a job."""
    run_id = new_run_id()
    with app.app_context():
        try:
            add_run_row(db.session, people["project_id"], people["case_id"], run_id, "running")
        finally:
            db.session.remove()
    return fake_run(app.extensions["weldsim"].runs_root, run_id, **record)


def test_a_real_run_streams_to_early_and_late_clients_through_one_reader(ws_app, people, tracker):  # noqa: F811
    settings = ws_app.extensions["weldsim"]
    tracker.roots.append(settings.runs_root)
    host = start_host(ws_app, reconcile_s=0.5, hub_poll_s=0.2)
    try:
        with LiveServer(ws_app) as server:
            answer = ws_app.test_client().post(
                f"/api/v1/projects/{people['project_id']}/cases/{people['case_id']}/runs", json={"ranks": 2},
                headers={"Authorization": f"Bearer {people['alice']}"})
            assert answer.status_code == 202, answer.get_json()
            run_id = answer.get_json()["run_id"]
            paths = RunPaths.for_id(settings.runs_root, run_id)
            early = connect(server.ws_url(run_id), token=people["alice"], origin=server.origin)
            seen = [receive_one(early, 120), receive_one(early, 60)]
            assert [m["type"] for m in seen] == ["progress", "progress"], seen
            second = connect(server.ws_url(run_id), token=people["alice"])
            first_of_second = receive_one(second, 10)
            assert first_of_second == seen[0]  # the history first
            if host.hub.open_readers():  # not already ended: both clients share one reader
                assert host.hub.open_readers() == [run_id] and open_fds(paths.progress_h5) <= 1
            second.close()
            messages = seen + receive_until_end(early, 180)
            ended = time.monotonic()
            progress, final = messages[:-1], messages[-1]
            assert all(m["type"] == "progress" and m["run_id"] == run_id for m in progress)
            assert len(progress) >= 3 and [m["percent"] for m in progress] == sorted(m["percent"] for m in progress)
            metrics = {name: m.value for name, m in read_metrics(paths).items()}
            assert final == {"type": "completed", "run_id": run_id, "status": "completed",
                             "compute_time_s": metrics["compute_time_s"], "metrics_summary": metrics}
            # the reader is closed within 5 s of the end
            wait_for(lambda: not host.hub.open_readers() and open_fds(paths.progress_h5) == 0, 5,
                     "the progress reader to be closed")
            assert time.monotonic() - ended < 5

            late = connect(server.ws_url(run_id), token=people["alice"])
            assert receive_until_end(late, 30) == messages  # the whole history, then the result
            assert final_row(ws_app, run_id)["state"] == "completed"
            wait_for(lambda: not host.hub.open_readers() and open_fds(paths.progress_h5) == 0, 5,
                     "the late client's reader to be closed")
    finally:
        host.stop()


def test_ping_pong_and_reader_closed_when_the_last_client_leaves(ws_app, people):
    paths = a_run(ws_app, people)
    write_progress(paths, rows=2)  # running, no final row: the stream stays open
    with LiveServer(ws_app) as server:
        client = connect(server.ws_url(paths.run_id), token=people["alice"], origin=server.origin)
        assert [receive_one(client)["type"] for _ in range(2)] == ["progress", "progress"]
        client.send(json.dumps({"type": "ping"}))
        assert receive_one(client) == {"type": "pong"}
        hub = hub_of(ws_app)
        assert hub.open_readers() == [paths.run_id] and open_fds(paths.progress_h5) == 1
        client.close()
        wait_for(lambda: not hub.open_readers() and open_fds(paths.progress_h5) == 0, 5,
                 "the reader to be closed after the last client left")
        # stopping the portal's hub ends the streams ("going away"), readers closed
        watcher = connect(server.ws_url(paths.run_id), token=people["alice"])
        assert receive_one(watcher)["type"] == "progress"
        hub.stop()
        assert close_code(watcher) == 1001 and open_fds(paths.progress_h5) == 0


def test_authentication_origin_and_visibility(ws_app, people):
    paths = a_run(ws_app, people)
    write_progress(paths, rows=1)
    with LiveServer(ws_app) as server:
        url = server.ws_url(paths.run_id)
        started = time.monotonic()
        silent = connect(url)  # no cookie, no token: closed after the 5 s grace
        assert close_code(silent, timeout=10) == 1008
        assert 4.5 <= time.monotonic() - started < 8
        assert close_code(connect(url, token="wsk_not-a-token")) == 1008
        not_auth = connect(url)
        not_auth.send(json.dumps({"type": "ping"}))  # the first message must authenticate
        assert close_code(not_auth) == 1008
        assert close_code(connect(url, token=people["bob"])) == 4404  # not bob's: as if absent
        assert close_code(connect(server.ws_url("zzzzzzzzzzzz"), token=people["alice"])) == 4404
        for origin in ("http://evil.example", f"http://127.0.0.1:{server.port + 1}", "null"):
            with pytest.raises(RefusedError) as refused:
                connect(url, token=people["alice"], origin=origin)
            assert refused.value.status_code == 403, origin
        # a bearer header on the handshake works too (scripts)
        header = connect(url, headers={"Authorization": f"Bearer {people['alice']}"})
        assert receive_one(header)["type"] == "progress"
        header.close()

        # the browser session cookie (log in over HTTP, then open the socket with the cookie)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login = urllib.request.Request(f"{server.origin}/api/v1/auth/login", method="POST",
                                       data=json.dumps({"email": "alice@example.com", "password": PASSWORD}).encode(),
                                       headers={"Content-Type": "application/json"})
        assert opener.open(login, timeout=30).status == 200
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        browser = connect(url, origin=server.origin, headers={"Cookie": cookie})
        assert receive_one(browser)["type"] == "progress"
        browser.send(json.dumps({"type": "ping"}))
        assert receive_one(browser) == {"type": "pong"}
        browser.close()
        with pytest.raises(RefusedError):  # the cookie from another site's page: refused
            connect(url, origin="https://evil.example", headers={"Cookie": cookie})


def test_allowed_origins_can_be_configured(ws_app, people):
    paths = a_run(ws_app, people)
    write_progress(paths, rows=1)
    ws_app.config["WS_ALLOWED_ORIGINS"] = "https://weldsim.example.com"
    with LiveServer(ws_app) as server:
        with pytest.raises(RefusedError):
            connect(server.ws_url(paths.run_id), token=people["alice"], origin=server.origin)
        client = connect(server.ws_url(paths.run_id), token=people["alice"], origin="https://weldsim.example.com")
        assert receive_one(client)["type"] == "progress"
        client.close()


def test_runs_that_never_reached_the_agent_end_from_their_row(ws_app, people):
    rows = {"failed": "invalid case: materials.tab: unknown material 'x'", "cancelled": "cancelled on request"}
    run_ids = {}
    with ws_app.app_context():
        try:
            for state, reason in rows.items():
                run_ids[state] = add_run_row(db.session, people["project_id"], people["case_id"], new_run_id(),
                                             state, reason=reason).run_id
        finally:
            db.session.remove()
    with LiveServer(ws_app) as server:
        failed = connect(server.ws_url(run_ids["failed"]), token=people["alice"])
        assert receive_until_end(failed, 10) == [{"type": "error", "run_id": run_ids["failed"], "status": "failed",
                                                  "error": rows["failed"]}]
        cancelled = connect(server.ws_url(run_ids["cancelled"]), token=people["alice"])
        assert receive_until_end(cancelled, 10) == [{"type": "completed", "run_id": run_ids["cancelled"],
                                                     "status": "cancelled", "compute_time_s": None,
                                                     "metrics_summary": {}}]


# --- the hub's terminal messages (no server needed) -------------------------------------------
def watch(runs_root, run_id: str, timeout: float = 10) -> list[dict]:
    hub = ProgressHub(runs_root, poll_s=0.05).start()
    try:
        with hub.subscribe(run_id) as sub:
            messages, deadline = [], time.monotonic() + timeout
            while not sub.ended and time.monotonic() < deadline:
                message = sub.get(timeout=0.1)
                if message is not None:
                    messages.append(message)
            assert hub.open_readers() == []  # closed at the end, before the client leaves
        return messages
    finally:
        hub.stop()


@pytest.mark.parametrize("case", ["completed", "cancelled", "failed", "lost", "cancelled_before_start"])
def test_terminal_messages(tmp_path, case):
    run_id = new_run_id()
    runs_root = tmp_path / "runs"
    if case == "completed":
        paths = fake_run(runs_root, run_id, state=RunState.RUNNING)
        write_progress(paths, rows=2, final=RunState.COMPLETED)
        from weldsim_hpc.results import write_metrics

        write_metrics(paths, {"T_max_K": 500.0, "compute_time_s": 3.0})
        *progress, final = watch(runs_root, run_id)
        assert [m["type"] for m in progress] == ["progress", "progress"]
        assert final == {"type": "completed", "run_id": run_id, "status": "completed", "compute_time_s": 3.0,
                         "metrics_summary": {"T_max_K": 500.0, "compute_time_s": 3.0}}
    elif case == "cancelled":  # the agent asked; the job checkpointed and wrote `interrupted`
        paths = fake_run(runs_root, run_id, state=RunState.RUNNING, cancel_requested=True)
        write_progress(paths, rows=1, final=RunState.INTERRUPTED, message="interrupted at step 3")
        final = watch(runs_root, run_id)[-1]
        assert (final["type"], final["status"]) == ("completed", "cancelled")
    elif case == "failed":
        paths = fake_run(runs_root, run_id, state=RunState.RUNNING)
        write_progress(paths, rows=1, final=RunState.FAILED, message="KSP diverged")
        assert watch(runs_root, run_id)[-1] == {"type": "error", "run_id": run_id, "status": "failed",
                                                "error": "KSP diverged"}
    elif case == "lost":  # killed: no final row; the agent gave up on it (resubmitted once already)
        paths = fake_run(runs_root, run_id, state=RunState.LOST, reason="attempt 2 ended while no agent watched it",
                         resubmissions=1)
        write_progress(paths, rows=2)
        *progress, final = watch(runs_root, run_id)
        assert len(progress) == 2
        assert final == {"type": "error", "run_id": run_id, "status": "lost",
                         "error": "attempt 2 ended while no agent watched it"}
    else:
        fake_run(runs_root, run_id, state=RunState.CANCELLED, reason="cancelled on request")
        assert watch(runs_root, run_id) == [{"type": "completed", "run_id": run_id, "status": "cancelled",
                                             "compute_time_s": None, "metrics_summary": {}}]


def test_a_new_attempt_replaces_the_file_and_the_stream_goes_on(tmp_path):
    run_id = new_run_id()
    runs_root = tmp_path / "runs"
    paths = fake_run(runs_root, run_id, state=RunState.RUNNING)
    write_progress(paths, rows=2)  # attempt 1: killed, no final row
    hub = ProgressHub(runs_root, poll_s=0.05).start()
    try:
        with hub.subscribe(run_id) as sub:
            assert [sub.get(timeout=2)["step"] for _ in range(2)] == [0, 1]
            paths.progress_h5.rename(paths.progress_attempt(1))  # what the next attempt does
            write_progress(paths, rows=3, final=RunState.COMPLETED, attempt=2)
            rest = []
            while not sub.ended:
                message = sub.get(timeout=5)
                assert message is not None, rest
                rest.append(message)
            assert [m["step"] for m in rest[:-1]] == [0, 1, 2] and rest[-1]["status"] == "completed"
    finally:
        hub.stop()
