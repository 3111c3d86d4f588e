"""The portal hosting the agent, with REAL runs (the tab-weld example at preset ci on 2
ranks, dolfinx under mpirun through the LocalExecutor), on SQLite and PostgreSQL:

* submit over the API → queued → running → completed, with timestamps, attempts, metrics
  and artifacts in the database, custom materials inlined into case.json, files
  downloadable; two concurrent reconciliation passes afterwards change and submit nothing;
* cancel while preparing and while running (the WebSocket ends with status cancelled);
* `weldsim portal` SIGKILLed mid-run, started again, stopped with SIGTERM mid-run and
  started once more: the run is adopted and finishes once — one attempt, no lost state,
  no duplicate rows — and a late WebSocket client gets its whole history.

Each test ends with the tracker's check that no process (job, rank, portal) is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from portal import ws
from portal.agent_host import start_host
from portal.api import runs as runs_api
from portal.extensions import db
from portal.services import accounts, cases, materials, projects
from weldsim_hpc.executors.record import read_record
from weldsim_hpc.results import read_metrics
from weldsim_hpc.run_paths import RunPaths, read_attempts

from ..executors._local_helpers import is_live, proc_stat, tracker, wait_for, wait_gone, wait_running  # noqa: F401
from .helpers import make_user
from .runs_helpers import (CUSTOM_ANVIL, VERY_LONG_TIME, LiveServer, close_code, connect, d2_properties,
                           final_row, receive_one, receive_until_end, row_of, runs_app, tab_weld_spec, wait_row)

pytestmark = pytest.mark.timeout(420)


@pytest.fixture
def hosted(web_app, tracker):  # noqa: F811
    """web_app with the runs API and WebSockets, hosting a started agent (stopped after)."""
    runs_api.init_app(web_app)
    ws.init_app(web_app)
    tracker.roots.append(web_app.extensions["weldsim"].runs_root)
    host = start_host(web_app, reconcile_s=0.5, hub_poll_s=0.2)
    try:
        yield host
    finally:
        host.stop()


def setup_case(app, email: str = "eng@example.com", *, long: bool = False, timing: dict | None = None) -> dict:
    """A user with an API token, a custom material, a project and the tab-weld case."""
    settings = app.extensions["weldsim"]
    with app.app_context():
        try:
            user = make_user(db.session, email)
            _, token = accounts.create_token(db.session, user, "tests")
            materials.create_custom(db.session, user, material_id=CUSTOM_ANVIL, name="my D2",
                                    properties=d2_properties())
            project = projects.create_project(db.session, user, name="Tabs", application_type="li_battery_tab")
            spec = tab_weld_spec(long=long, time=timing, custom_anvil=True)
            case = cases.create_case(db.session, user, project.id, spec=spec, name="tab weld",
                                     storage_root=settings.storage_root)
            return {"token": token, "user_id": user.id, "project_id": project.id, "case_id": case.id,
                    "submit_url": f"/api/v1/projects/{project.id}/cases/{case.id}/runs"}
        finally:
            db.session.remove()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def metrics_file(paths: RunPaths) -> dict[str, tuple[float, str]]:
    return {name: (m.value, m.unit) for name, m in read_metrics(paths).items()}


def states_of(paths: RunPaths) -> list[str]:
    return [state.value for _, state, _ in read_record(paths).history]


def test_submit_run_complete_and_reconcile_idempotently(hosted):
    app = hosted.app
    settings = app.extensions["weldsim"]
    ids = setup_case(app)
    client = app.test_client()
    answer = client.post(ids["submit_url"], json={"ranks": 2}, headers=bearer(ids["token"]))
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    run_id = body["run_id"]
    assert body["state"] == "queued" and body["ntasks"] == 2 and answer.headers["Location"] == f"/api/v1/runs/{run_id}"

    running = wait_row(app, run_id, lambda r: r["state"] in ("running", "completed"), 120, "running")
    assert running["attempts"] == 1 and running["started_at"] is not None
    row = final_row(app, run_id)
    paths = RunPaths.for_id(settings.runs_root, run_id)
    assert row["state"] == "completed", row["reason"]
    assert (row["attempts"], row["exit_code"], row["progress_percent"], row["scheduler_job_ids"]) == (1, 0, 100.0, [])
    assert row["submitted_at"] <= row["started_at"] < row["finished_at"]
    assert row["metrics"] == metrics_file(paths) and row["compute_time_s"] == row["metrics"]["compute_time_s"][0]
    kinds = {kind for kind, _ in row["artifacts"].values()}
    assert {"fields_xdmf", "fields_hdf5", "fields_pvd", "fields_vtu", "log", "provenance", "case", "mesh_xdmf",
            "metrics", "progress_hdf5"} <= kinds
    assert "executor.json" not in row["artifacts"] and "attempts.json" not in row["artifacts"]
    anvil = json.loads(paths.case_json.read_text())["materials"]["anvil"]  # the custom material, inlined
    assert anvil["id"] == f"{CUSTOM_ANVIL}.as_run" and anvil["density_kg_m3"] == d2_properties()["density_kg_m3"]

    detail = client.get(f"/api/v1/runs/{run_id}", headers=bearer(ids["token"])).get_json()
    h5 = next(a for a in detail["artifacts"] if a["path"] == "results/fields.h5")
    download = client.get(h5["url"], headers=bearer(ids["token"]))
    assert download.status_code == 200 and download.data == (paths.results_dir / "fields.h5").read_bytes()
    log = client.get(f"/api/v1/runs/{run_id}/log?lines=5", headers=bearer(ids["token"])).get_json()
    assert log["text"] == "\n".join(paths.solver_log.read_text().splitlines()[-5:]) and "completed" in log["text"]

    # two passes at once over a finished run: nothing changes, nothing is submitted
    before = row_of(app, run_id)
    results = []
    passes = [threading.Thread(target=lambda: results.append(hosted.reconcile())) for _ in range(2)]
    for t in passes:
        t.start()
    for t in passes:
        t.join(60)
    assert results == [[], []]
    assert row_of(app, run_id) == before
    assert len(read_attempts(paths)) == 1 and states_of(paths) == ["queued", "running", "completed"]
    assert hosted.agent.active() == []


def test_cancel_while_preparing_and_while_running(hosted):
    app = hosted.app
    settings = app.extensions["weldsim"]
    ids = setup_case(app, timing=VERY_LONG_TIME)
    client = app.test_client()
    early = client.post(ids["submit_url"], json={"ranks": 2}, headers=bearer(ids["token"])).get_json()["run_id"]
    answer = client.post(f"/api/v1/runs/{early}/cancel", headers=bearer(ids["token"]))
    assert answer.status_code == 200 and answer.get_json()["state"] == "cancelled", answer.get_json()
    assert not hosted.is_preparing(early)
    early_paths = RunPaths.for_id(settings.runs_root, early)
    assert not early_paths.attempts_json.exists() or read_attempts(early_paths) == []  # nothing was started

    run_id = client.post(ids["submit_url"], json={"ranks": 2}, headers=bearer(ids["token"])).get_json()["run_id"]
    paths = RunPaths.for_id(settings.runs_root, run_id)
    assert hosted.wait_prepared(run_id, 120)
    attempt = wait_running(paths, rows=2)
    with LiveServer(app) as server:
        watcher = connect(server.ws_url(run_id), token=ids["token"])
        assert receive_one(watcher)["type"] == "progress"
        answer = client.post(f"/api/v1/runs/{run_id}/cancel", headers=bearer(ids["token"]))
        assert answer.status_code == 200
        body = answer.get_json()
        assert (body["state"], body["reason"], body["attempts"]) == ("cancelled", "cancelled on request", 1)
        messages = receive_until_end(watcher, 30)
        assert messages[-1]["type"] == "completed" and messages[-1]["status"] == "cancelled", messages[-1]
        assert close_code(watcher) == 1000
    assert wait_gone({attempt["pid"]: proc_stat(attempt["pid"])[4]} if proc_stat(attempt["pid"]) else {}, 10) == {}
    assert read_record(paths).state.value == "cancelled"


def test_a_cancelled_run_resumes_from_its_checkpoint(hosted):
    app = hosted.app
    settings = app.extensions["weldsim"]
    ids = setup_case(app, timing=VERY_LONG_TIME)
    other = setup_case(app, "other@example.com")
    client = app.test_client()
    run_id = client.post(ids["submit_url"], json={"ranks": 2}, headers=bearer(ids["token"])).get_json()["run_id"]
    paths = RunPaths.for_id(settings.runs_root, run_id)
    assert hosted.wait_prepared(run_id, 120)
    wait_running(paths, rows=1, ckpts=1)
    answer = client.post(f"/api/v1/runs/{run_id}/resume", headers=bearer(ids["token"]))
    assert answer.status_code == 409 and "running" in answer.get_json()["error"]["message"], answer.get_json()
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=bearer(ids["token"])).get_json()["state"] == "cancelled"
    assert client.post(f"/api/v1/runs/{run_id}/resume", headers=bearer(other["token"])).status_code == 404
    assert client.post(f"/api/v1/runs/{run_id}/resume").status_code == 401

    answer = client.post(f"/api/v1/runs/{run_id}/resume", headers=bearer(ids["token"]))
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["state"] in ("queued", "running"), answer.get_json()
    row = final_row(app, run_id, timeout=400)
    assert (row["state"], row["attempts"], row["exit_code"]) == ("completed", 2, 0), row["reason"]
    assert "resuming from step" in paths.solver_log.read_text()  # not from t = 0
    assert [a["attempt"] for a in read_attempts(paths)] == [1, 2]
    answer = client.post(f"/api/v1/runs/{run_id}/resume", headers=bearer(ids["token"]))
    assert answer.status_code == 409 and "completed" in answer.get_json()["error"]["message"]


def test_the_weldsim_cli_reaches_the_agent_the_portal_hosts(hosted):
    from weldsim_hpc.run_paths import is_run_id

    from ..executors._local_helpers import THERMAL, WELDSIM

    root = hosted.app.extensions["weldsim"].runs_root
    agent_file = root / ".agent" / "agent.json"
    info = json.loads(agent_file.read_text())
    assert info["pid"] == os.getpid() and info["hosted_by"] == "the portal"
    assert agent_file.stat().st_mode & 0o777 == 0o600

    def weldsim(*args) -> subprocess.CompletedProcess:
        out = subprocess.run([str(WELDSIM), *map(str, args), "--runs-root", str(root)], capture_output=True,
                             text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
        assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
        return out

    status = weldsim("agent", "status")
    assert status.returncode == 0 and f"agent pid {os.getpid()}" in status.stdout, status.stdout + status.stderr
    submitted = weldsim("submit", THERMAL, "--preset", "ci", "--executor", "local", "--ntasks", 2)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    run_id = submitted.stdout.strip()
    assert is_run_id(run_id) and run_id in hosted.agent.active() + [run_id]
    watched = weldsim("watch", run_id)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert read_record(RunPaths.for_id(root, run_id)).state.value == "completed"

    stop = weldsim("agent", "stop")  # only the portal may stop its agent
    assert stop.returncode == 1 and "hosted by the portal" in stop.stderr, stop.stdout + stop.stderr
    assert weldsim("agent", "status").returncode == 0 and hosted.agent is not None
    hosted.stop()
    assert not agent_file.exists()
    assert weldsim("agent", "status").returncode == 1


# --- `weldsim portal` in a process of its own, killed and restarted ----------------------------------
class PortalProcess:
    """`python -m weldsim_hpc.cli_portal --port 0` (what `weldsim portal` runs) on a database."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "weldsim_hpc.cli_portal", "--port", "0"], env=env,
                                     stdout=subprocess.PIPE, stderr=self.log, cwd=env["WELDSIM_INSTANCE_PATH"])
        line = b""
        deadline = time.monotonic() + 120
        while b"WeldSim portal on http://" not in line:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the portal did not start (exit {self.proc.poll()}); see {log}")
        self.url = line.decode().split("WeldSim portal on ")[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def request(self, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={**bearer(token), "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def finish(self, sig: int, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.log.close()
        rest = self.proc.stdout.read().decode()
        self.proc.stdout.close()
        if sig == signal.SIGTERM:
            assert "portal stopped" in rest, rest
        return code


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_portal_killed_mid_run_adopts_the_run_after_restart(backend, request, tmp_path, tracker):  # noqa: F811
    from simple_websocket import ConnectionError as RefusedError

    instance = tmp_path / "instance"
    instance.mkdir()
    url = request.getfixturevalue("new_postgres_database")() if backend == "postgres" \
        else f"sqlite:///{instance / 'portal.db'}"
    env = {**os.environ, "WELDSIM_DATABASE_URL": url, "WELDSIM_INSTANCE_PATH": str(instance),
           "WELDSIM_SECRET_KEY": "test-secret"}
    runs_root = instance / "runs"
    tracker.roots.append(runs_root)
    log = tmp_path / "portal.log"
    portals: list[PortalProcess] = []

    def start() -> PortalProcess:
        portal = PortalProcess(env, log)
        portals.append(portal)
        return portal

    app = None
    try:
        first = start()  # migrates the empty database, hosts the agent
        app = runs_app(url, instance)
        ids = setup_case(app, timing=VERY_LONG_TIME)
        status, body = first.request("POST", ids["submit_url"], ids["token"], {"ranks": 2})
        assert status == 202, body
        run_id = body["run_id"]
        paths = RunPaths.for_id(runs_root, run_id)
        wait_for(paths.attempts_json.exists, 120, f"run {run_id} to be prepared")
        attempt = wait_running(paths, rows=2)
        job = {attempt["pid"]: proc_stat(attempt["pid"])[4]}

        assert first.finish(signal.SIGKILL) == -signal.SIGKILL
        assert all(is_live(pid, ticks) for pid, ticks in job.items()), "the job must outlive the portal"
        second = start()  # adopts the live job
        assert second.finish(signal.SIGTERM) == 0  # a clean stop while the run goes on
        third = start()

        row = final_row(app, run_id, timeout=300)
        assert row["state"] == "completed", (row["reason"], log.read_text()[-3000:])
        attempts = read_attempts(paths)
        assert [(a["attempt"], a["pid"], a["exit_code"]) for a in attempts] == [(1, attempt["pid"], 0)]
        assert states_of(paths) == ["queued", "running", "completed"]  # never lost, never resubmitted
        assert f"run {run_id}: adopted attempt 1" in log.read_text()
        assert (row["attempts"], row["exit_code"]) == (1, 0)
        assert row["metrics"] == metrics_file(paths)  # every metric once (unique run+name)

        # a client joining after the end gets the whole history, then the result
        client = connect(f"ws://127.0.0.1:{third.port}/ws/runs/{run_id}", token=ids["token"])
        messages = receive_until_end(client, 30)
        progress = [m for m in messages if m["type"] == "progress"]
        assert len(progress) >= 3 and progress == sorted(progress, key=lambda m: m["elapsed_s"])
        assert messages[-1]["type"] == "completed" and messages[-1]["status"] == "completed"
        assert messages[-1]["metrics_summary"] == {k: v for k, (v, _) in metrics_file(paths).items()}
        with pytest.raises(RefusedError) as refused:
            connect(f"ws://127.0.0.1:{third.port}/ws/runs/{run_id}", origin="http://evil.example")
        assert refused.value.status_code == 403
        assert third.finish(signal.SIGTERM) == 0
    finally:
        for portal in portals:
            if portal.proc.poll() is None:
                portal.finish(signal.SIGKILL)
        if app is not None:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    assert all(p.proc.returncode is not None for p in portals)
