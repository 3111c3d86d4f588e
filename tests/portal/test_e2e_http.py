"""End to end through HTTP only, against a real `weldsim portal` process (SQLite, the agent
hosted in it, runs on 2 ranks through the LocalExecutor):

log in (session cookie + CSRF token) → create a project → create a case from
examples/horn_20khz_stepped_modal.toml at its ``ci`` preset → submit it → the WebSocket
/ws/runs/<id> (opened with the session cookie) gives progress, then ``completed`` → the
run's metrics and artifacts are fetched and a file downloaded.

The only non-HTTP step is making the account, with the portal's own CLI
(``flask --app portal users create``), as an operator would. The test process never
imports mpi4py or dolfinx; the tracker fails the test if any process is left behind.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ..executors._local_helpers import ROOT, tracker  # noqa: F401
from .runs_helpers import connect, receive_until_end
from .test_agent_host import PortalProcess

pytestmark = pytest.mark.timeout(420)

HORN = ROOT / "examples" / "horn_20khz_stepped_modal.toml"
EMAIL, PASSWORD = "engineer@example.com", "a long enough password 42"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def horn_ci_spec() -> dict[str, Any]:
    """The example's TOML with its ci preset merged in (what `--preset ci` does): the case API
    takes a plain CaseSpec, without the presets table."""
    data = tomllib.loads(HORN.read_text())
    presets = data.pop("presets")
    return deep_merge(data, presets["ci"])


def instance_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a portal process on a fresh instance folder and SQLite database."""
    instance = tmp_path / "instance"
    instance.mkdir()
    return {**os.environ, "WELDSIM_DATABASE_URL": f"sqlite:///{instance / 'portal.db'}",
            "WELDSIM_INSTANCE_PATH": str(instance), "WELDSIM_SECRET_KEY": "test-secret"}


def create_account(env: dict[str, str], email: str = EMAIL, password: str = PASSWORD) -> None:
    """The account, made with the portal's own CLI, as an operator would (migrates first)."""
    flask = [sys.executable, "-m", "flask", "--app", "portal"]
    for argv in (flask + ["db", "upgrade"], flask + ["users", "create", email, "--password", password]):
        done = subprocess.run(argv, env=env, cwd=env["WELDSIM_INSTANCE_PATH"], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr


class Browser:
    """An HTTP client with a cookie jar that sends the CSRF token on unsafe requests."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf: str | None = None

    def request(self, method: str, path: str, body: dict | None = None,
                raw: bool = False) -> tuple[int, Any, dict[str, str]]:
        """(status, the JSON answer — or the bytes with `raw` or a non-JSON answer —, headers)."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if method != "GET" and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=60) as answer:
                data, status, got = answer.read(), answer.status, dict(answer.headers)
        except urllib.error.HTTPError as exc:
            data, status, got = exc.read(), exc.code, dict(exc.headers)
        is_json = got.get("Content-Type", "").startswith("application/json")
        return status, (json.loads(data) if is_json and data and not raw else data), got

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def test_login_project_case_submit_stream_results_over_http(tmp_path, tracker):  # noqa: F811
    env = instance_env(tmp_path)
    tracker.roots.append(Path(env["WELDSIM_INSTANCE_PATH"]) / "runs")
    portal = PortalProcess(env, tmp_path / "portal.log")  # migrates the empty database, hosts the agent
    try:
        create_account(env)
        web = Browser(portal.url)

        status, body, _ = web.request("GET", "/api/v1/projects")
        assert status == 401, body
        status, body, _ = web.request("POST", "/api/v1/auth/login", {"email": EMAIL, "password": PASSWORD})
        assert status == 200 and body["auth"] == "session", body
        web.csrf = body["csrf_token"]

        status, project, _ = web.request("POST", "/api/v1/projects",
                                         {"name": "Horns", "application_type": "horn_design"})
        assert status == 201, project
        spec = horn_ci_spec()
        status, case, _ = web.request("POST", f"/api/v1/projects/{project['id']}/cases", {"spec": spec})
        assert status == 201, case
        assert case["name"] == spec["name"] and case["spec"]["analysis"] == "modal"
        assert case["spec"]["mesh"]["size_m"] == 0.0075  # the ci preset

        status, run, headers = web.request("POST", f"/api/v1/projects/{project['id']}/cases/{case['id']}/runs",
                                           {"ranks": 2})
        assert status == 202, run
        assert run["state"] == "queued" and run["ntasks"] == 2
        run_id = run["run_id"]
        assert headers["Location"] == f"/api/v1/runs/{run_id}"

        stream = connect(f"ws://127.0.0.1:{portal.port}{run['progress_ws']}", origin=portal.url,
                         headers={"Cookie": web.cookie_header()})
        messages = receive_until_end(stream, 300)
        progress, final = messages[:-1], messages[-1]
        assert progress and all(m["type"] == "progress" and m["run_id"] == run_id for m in progress), messages[:3]
        assert [m["percent"] for m in progress] == sorted(m["percent"] for m in progress)
        assert final["type"] == "completed" and final["status"] == "completed", final

        status, detail, _ = web.request("GET", f"/api/v1/runs/{run_id}")
        assert status == 200, detail
        # the reconciler copies the end into the row shortly after the stream has it
        for _ in range(100):
            if detail["state"] == "completed":
                break
            time.sleep(0.2)
            detail = web.request("GET", f"/api/v1/runs/{run_id}")[1]
        assert detail["state"] == "completed" and detail["exit_code"] == 0 and detail["ntasks"] == 2, detail
        metrics = {m["name"]: m["value"] for m in detail["metrics"]}
        assert metrics == final["metrics_summary"]
        assert "compute_time_s" in metrics
        frequencies = [v for k, v in metrics.items() if k.startswith("f_") and k.endswith("_Hz")]
        assert frequencies and any(15e3 < f < 25e3 for f in frequencies), metrics
        kinds = {a["kind"] for a in detail["artifacts"]}
        assert {"log", "provenance", "case", "metrics"} <= kinds, kinds

        case_file = next(a for a in detail["artifacts"] if a["kind"] == "case")
        status, raw, got = web.request("GET", case_file["url"], raw=True)
        assert status == 200 and len(raw) == case_file["size_bytes"]
        assert got["Content-Disposition"].startswith("attachment")
        assert json.loads(raw)["analysis"] == "modal"
        status, log, _ = web.request("GET", f"/api/v1/runs/{run_id}/log?lines=20")
        assert status == 200 and log["text"]
        status, listed, _ = web.request("GET", f"/api/v1/projects/{project['id']}/runs")
        assert status == 200 and [r["run_id"] for r in listed["items"]] == [run_id]

        status, _, _ = web.request("POST", "/api/v1/auth/logout")
        assert status == 204
        assert web.request("GET", f"/api/v1/runs/{run_id}")[0] == 401
        assert portal.finish(signal.SIGTERM) == 0
    finally:
        if portal.proc.poll() is None:
            portal.finish(signal.SIGKILL)


def test_the_horn_spec_has_a_ci_preset():
    """Guards the example this test relies on."""
    data = tomllib.loads(Path(HORN).read_text())
    assert "ci" in data["presets"] and horn_ci_spec()["mesh"]["size_m"] == data["presets"]["ci"]["mesh"]["size_m"]
