"""Serving the portal as the README says: the main command (`weldsim portal --example`) and
the documented production command (gunicorn, one gthread worker).

Both start real processes on a fresh instance folder (SQLite, LocalExecutor) and are
checked over HTTP and the WebSocket only. The example runs use the ``ci`` preset (small
meshes); the README's command runs the cases as shipped.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ..executors._local_helpers import tracker  # noqa: F401
from .runs_helpers import connect, receive_until_end
from .test_e2e_http import EMAIL, PASSWORD, Browser, create_account, horn_ci_spec, instance_env

pytestmark = pytest.mark.timeout(600)

VENV_BIN = Path(sys.executable).parent
EXAMPLE_CASES = 4


class ExamplePortal:
    """`weldsim portal --example --example-preset ci --port 0`; reads the printed login."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "weldsim"), "portal", "--example", "--example-preset", "ci", "--port", "0"],
            env=env, stdout=subprocess.PIPE, stderr=self.log, cwd=env["WELDSIM_INSTANCE_PATH"])
        self.lines: list[str] = []
        self.url = self._line_with("WeldSim portal on http://").split("WeldSim portal on ")[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        header = self._line_with("Example project:")
        self.project_path = re.search(r"(/api/v1/projects/\d+)", header).group(1)
        self.submitted = "(submitted)" in header
        login = self._line_with("log in at")
        self.email = re.search(r"e-mail (\S+)", login).group(1)
        self.password = re.search(r"password (\S+)", login).group(1)
        self.token = re.search(r"Bearer (\S+?)'", self._line_with("API: curl")).group(1)

    def _line_with(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.proc.stdout.readline().decode()
            if line:
                self.lines.append(line)
            if text in line:
                return line
            if (not line and self.proc.poll() is not None) or time.monotonic() > deadline:
                raise AssertionError(f"no line with {text!r} (exit {self.proc.poll()}): {self.lines}")

    def wait_for_lines(self, pattern: str, count: int, timeout: float) -> list[str]:
        """The printed lines matching `pattern`, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while len(found := [ln for ln in self.lines if re.search(pattern, ln)]) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} lines matching {pattern!r} expected: {self.lines}")
            self._line_with("\n", timeout=deadline - time.monotonic())
        return found

    def finish(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(60) == 0
        finally:
            self.log.close()
        rest = self.proc.stdout.read().decode()
        self.proc.stdout.close()
        assert "portal stopped" in rest, rest
        return rest


def test_main_command_serves_the_example_project_and_a_second_start_submits_nothing(tmp_path, tracker):  # noqa: F811
    env = instance_env(tmp_path)
    tracker.roots.append(Path(env["WELDSIM_INSTANCE_PATH"]) / "runs")
    portal = ExamplePortal(env, tmp_path / "portal.log")
    try:
        assert portal.submitted
        web = Browser(portal.url)
        status, body, _ = web.request("POST", "/api/v1/auth/login", {"email": portal.email, "password": portal.password})
        assert status == 200, body  # the printed login works
        status, runs, _ = web.request("GET", portal.project_path + "/runs")
        assert status == 200 and runs["total"] == EXAMPLE_CASES, runs
        # the console follows the runs to the end; every example completes
        done = portal.wait_for_lines(r": (completed|failed|cancelled|interrupted|lost)", EXAMPLE_CASES, 480)
        assert all(": completed" in line for line in done), done
        assert any("f_working_Hz" in line for line in done), done  # metrics are printed with the end
        status, runs, _ = web.request("GET", portal.project_path + "/runs")
        assert {r["state"] for r in runs["items"]} == {"completed"}, runs
        first_ids = sorted(r["run_id"] for r in runs["items"])
        portal.finish()
    finally:
        if portal.proc.poll() is None:
            portal.proc.kill()
            portal.proc.wait(30)

    again = ExamplePortal(env, tmp_path / "portal.log")  # idempotent: the same login, no new runs
    try:
        assert not again.submitted
        assert (again.email, again.password, again.token) == (portal.email, portal.password, portal.token)
        req = urllib.request.Request(again.url + again.project_path + "/runs",
                                     headers={"Authorization": f"Bearer {again.token}"})
        with urllib.request.urlopen(req, timeout=60) as answer:
            runs = json.loads(answer.read())
        assert sorted(r["run_id"] for r in runs["items"]) == first_ids
        login_file = Path(env["WELDSIM_INSTANCE_PATH"]) / "example-login.json"
        assert login_file.stat().st_mode & 0o777 == 0o600
        again.finish()
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
            again.proc.wait(30)


def test_documented_gunicorn_command_serves_api_and_progress_stream(tmp_path, tracker):  # noqa: F811
    env = instance_env(tmp_path)
    instance = Path(env["WELDSIM_INSTANCE_PATH"])
    tracker.roots.append(instance / "runs")
    create_account(env)
    log = open(tmp_path / "gunicorn.log", "ab")
    # the command of the README's "Production" section, on a free port
    proc = subprocess.Popen([str(VENV_BIN / "gunicorn"), "-w", "1", "-k", "gthread", "--threads", "64",
                             "-b", "127.0.0.1:0", "portal.agent_host:create_hosted_app()"],
                            env=env, cwd=instance, stdout=log, stderr=subprocess.STDOUT)
    try:
        port = _gunicorn_port(proc, tmp_path / "gunicorn.log")
        base = f"http://127.0.0.1:{port}"
        web = Browser(base)
        assert _wait_http(base + "/api/v1/openapi.json") == 200
        status, body, _ = web.request("POST", "/api/v1/auth/login",
                                      {"email": EMAIL, "password": PASSWORD})
        assert status == 200, body
        web.csrf = body["csrf_token"]
        status, project, _ = web.request("POST", "/api/v1/projects", {"name": "Horns", "application_type": "horn_design"})
        assert status == 201, project
        status, case, _ = web.request("POST", f"/api/v1/projects/{project['id']}/cases", {"spec": horn_ci_spec()})
        assert status == 201, case
        status, run, _ = web.request("POST", f"/api/v1/projects/{project['id']}/cases/{case['id']}/runs", {"ranks": 2})
        assert status == 202, run
        stream = connect(f"ws://127.0.0.1:{port}{run['progress_ws']}", origin=base,
                         headers={"Cookie": web.cookie_header()})
        messages = receive_until_end(stream, 300)
        assert messages[-1]["type"] == "completed" and messages[-1]["status"] == "completed", messages[-1]
        assert any(m["type"] == "progress" for m in messages[:-1])
    finally:
        proc.send_signal(signal.SIGTERM)  # gunicorn's graceful stop: the host stops at exit
        try:
            assert proc.wait(90) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
            log.close()


def _gunicorn_port(proc: subprocess.Popen, log: Path, timeout: float = 60) -> int:
    """The port gunicorn bound ("Listening at: http://127.0.0.1:PORT")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"gunicorn did not start (exit {proc.poll()}): {log.read_text()[-2000:]}")


def _wait_http(url: str, timeout: float = 120) -> int:
    """The status of GET url once the app answers (gunicorn loads it in the worker)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
