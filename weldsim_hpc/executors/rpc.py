"""`weldsim agent` as a daemon: the Agent served on 127.0.0.1, and the client the CLI uses.

Why multiprocessing.connection: it is in the standard library and authenticates every
connection with a shared key (HMAC challenge) before a byte of a request is read. The key,
pid and port are in <runs_root>/.agent/agent.json, mode 600: whoever can read the runs
root's agent file may drive its agent; nobody else can. Requests and replies are JSON
(never pickle): {"op": ..., ...} → {"ok": true, ...} or {"ok": false, "error": "..."}.

    python -m weldsim_hpc.executors.rpc RUNS_ROOT       serve in the foreground
    ensure_agent(config) → AgentClient                  start on demand, then connect
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any

from ..errors import WeldSimError
from ..launch import pid_alive
from ..run_paths import write_json_atomic
from .agent import Agent, AgentError
from .config import ExecutorConfig, load_config
from .record import Resources

AGENT_FILE = "agent.json"
AGENT_LOG = "agent.log"
START_TIMEOUT_S = 60.0


class AgentUnavailable(WeldSimError):
    """No agent answers for this runs root (and one could not be started)."""


class AgentRefused(AgentError):
    """The agent answered, and refused (e.g. to stop: it belongs to the portal)."""


def read_agent_file(config: ExecutorConfig) -> dict[str, Any] | None:
    try:
        info = json.loads((config.agent_dir / AGENT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and {"pid", "port", "authkey"} <= set(info) else None


class AgentServer:
    """Serves one Agent to local clients until `stop` (or SIGTERM).

    hosted_by: set when another program owns the agent (the portal): a client's "stop" is
    then refused with that name, since only that program may end the agent.
    """

    def __init__(self, agent: Agent, hosted_by: str | None = None):
        self.agent = agent
        self.hosted_by = hosted_by
        self._key = secrets.token_bytes(32)
        # authenticated per connection in its own thread (`_handle`), not in accept(): a
        # client with a wrong key, or one that never answers, must not stop or stall the server
        self._listener = Listener(("127.0.0.1", 0))
        self._port = self._listener.address[1]  # kept: a closed listener has no address
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return self._port

    def write_agent_file(self) -> Path:
        path = self.agent.config.agent_dir / AGENT_FILE
        write_json_atomic(path, {"pid": os.getpid(), "host": "127.0.0.1", "port": self.port,
                                 "authkey": self._key.hex(), "started": time.time(),
                                 "runs_root": os.fspath(self.agent.config.runs_root),
                                 "hosted_by": self.hosted_by})
        os.chmod(path, 0o600)
        return path

    def remove_agent_file(self) -> None:
        """Remove agent.json if it is still this process's."""
        info = read_agent_file(self.agent.config)
        if info is not None and info.get("pid") == os.getpid() and info.get("port") == self.port:
            try:
                (self.agent.config.agent_dir / AGENT_FILE).unlink()
            except FileNotFoundError:
                pass

    def serve_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                conn = self._listener.accept()
            except OSError:
                if self._stopped.is_set():
                    break
                continue
            if self._stopped.is_set():
                conn.close()
                break
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            try:  # wake the accept() in serve_forever: closing the socket from another thread does not
                socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
            except OSError:
                pass
            self._listener.close()

    def _handle(self, conn) -> None:
        with conn:
            try:
                deliver_challenge(conn, self._key)
                answer_challenge(conn, self._key)
            except (AuthenticationError, OSError, EOFError):
                return  # not a client of ours
            try:
                request = json.loads(conn.recv_bytes(1 << 20))
                reply = {"ok": True, **self.dispatch(request)}
            except (WeldSimError, ValueError, TypeError, KeyError) as exc:
                reply = {"ok": False, "error": str(exc), "refused": isinstance(exc, AgentRefused)}
            except EOFError:
                return
            conn.send_bytes(json.dumps(reply).encode())
            if reply.get("stopping"):
                self.stop()

    def dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        agent = self.agent
        if op == "ping":
            return {"pid": os.getpid(), "runs_root": os.fspath(agent.config.runs_root), "active": agent.active()}
        if op == "submit":
            resources = Resources.model_validate(request.get("resources") or {})
            record = agent.submit(request["run_id"], request.get("executor"), resources,
                                  resume=bool(request.get("resume")))
            return {"record": json.loads(record.model_dump_json())}
        if op == "cancel":
            return {"record": json.loads(agent.cancel(request["run_id"]).model_dump_json())}
        if op == "logs":
            return {"text": agent.logs(request["run_id"], int(request.get("lines", 200)))}
        if op == "reconcile":
            return {"touched": agent.reconcile()}
        if op == "stop":
            if self.hosted_by:
                raise AgentRefused(f"this agent is hosted by {self.hosted_by} (pid {os.getpid()}): "
                                   f"stop {self.hosted_by} to stop it")
            return {"stopping": True}
        raise AgentError(f"unknown request {op!r}")


class AgentClient:
    """Talks to the agent of one runs root (see `ensure_agent`)."""

    def __init__(self, info: dict[str, Any]):
        self.info = info

    def request(self, op: str, timeout_s: float = 120.0, **fields: Any) -> dict[str, Any]:
        try:
            conn = Client(("127.0.0.1", int(self.info["port"])), authkey=bytes.fromhex(self.info["authkey"]))
        except (OSError, EOFError) as exc:
            raise AgentUnavailable(f"the agent (pid {self.info.get('pid')}) does not answer: {exc}") from None
        with conn:
            conn.send_bytes(json.dumps({"op": op, **fields}).encode())
            if not conn.poll(timeout_s):
                raise AgentUnavailable(f"the agent did not answer {op!r} within {timeout_s:.0f} s")
            reply = json.loads(conn.recv_bytes())
        if not reply.pop("ok"):
            raise (AgentRefused if reply.get("refused") else AgentError)(reply["error"])
        return reply


def connect(config: ExecutorConfig) -> AgentClient | None:
    """A client of the live agent of config.runs_root, or None if there is none."""
    info = read_agent_file(config)
    if info is None or not pid_alive(int(info["pid"])):
        return None
    client = AgentClient(info)
    try:
        client.request("ping", timeout_s=10)
    except (AgentUnavailable, AgentError):
        return None
    return client


def start_daemon(config: ExecutorConfig) -> AgentClient:
    """Start `weldsim agent` for config.runs_root in the background; wait until it answers."""
    config.agent_dir.mkdir(parents=True, exist_ok=True)
    old = read_agent_file(config)
    log = open(config.agent_dir / AGENT_LOG, "ab")
    with log:
        proc = subprocess.Popen([sys.executable, "-m", "weldsim_hpc.executors.rpc", os.fspath(config.runs_root)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=config.runs_root)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = read_agent_file(config)
        if info is not None and info != old and info["pid"] == proc.pid:
            client = connect(config)
            if client is not None:
                return client
        if proc.poll() is not None:
            other = connect(config)  # lost a race with another agent start: use that one
            if other is not None:
                return other
            raise AgentUnavailable(f"the agent exited with code {proc.returncode}; "
                                   f"see {config.agent_dir / AGENT_LOG}")
        time.sleep(0.2)
    raise AgentUnavailable(f"the agent did not start within {START_TIMEOUT_S:.0f} s; "
                           f"see {config.agent_dir / AGENT_LOG}")


def ensure_agent(config: ExecutorConfig) -> AgentClient:
    """The runs root's agent, started on demand."""
    return connect(config) or start_daemon(config)


def stop_agent(config: ExecutorConfig, timeout_s: float = 30.0) -> int | None:
    """Ask the agent to stop (runs go on; a later agent adopts them). Its pid, or None."""
    client = connect(config)
    if client is None:
        return None
    pid = int(client.info["pid"])
    try:
        client.request("stop", timeout_s=10)
    except AgentRefused:
        raise
    except (AgentUnavailable, AgentError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pid


def serve(runs_root: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_config({"runs_root": runs_root})
    agent = Agent(config).start()
    server = AgentServer(agent)

    def on_term(signum, frame):  # SIGTERM: stop serving; runs go on
        server.stop()

    signal.signal(signal.SIGTERM, on_term)
    server.write_agent_file()
    logging.getLogger("weldsim.agent").info("agent %d serving %s on 127.0.0.1:%d", os.getpid(),
                                            config.runs_root, server.port)
    try:
        server.serve_forever()
    finally:
        agent.close()
        server.remove_agent_file()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weldsim_hpc.executors.rpc")
    parser.add_argument("runs_root")
    args = parser.parse_args(argv)
    try:
        return serve(args.runs_root)
    except WeldSimError as exc:  # e.g. another agent owns the runs root: one line in agent.log
        print(f"weldsim agent: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
