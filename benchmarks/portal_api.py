"""Benchmark: portal API latency with 10,000 runs stored, and progress row → WebSocket client latency.

    .venv/bin/python benchmarks/portal_api.py                       # SQLite, 10,000 runs, 300 requests each
    .venv/bin/python benchmarks/portal_api.py --postgres            # SQLite, then PostgreSQL (127.0.0.1:5432)
    .venv/bin/python benchmarks/portal_api.py --runs 10000 --requests 300 --rows 100

Per database backend:

1. a fresh database — SQLite: a file in a temporary directory; PostgreSQL (``--postgres``):
   ``weldsim_bench_<random>`` created through the admin URL (``--postgres-admin-url``, default
   postgresql://postgres@127.0.0.1:5432/postgres, trust auth) and dropped afterwards — brought
   to head with the portal's migrations (``flask_migrate.upgrade``);
2. one user (with an API token), one project, one case, and ``--runs`` Run rows (submitted over
   the past year, states mixed: 70 % completed, 15 % failed, 5 % each cancelled, lost,
   interrupted) with ``--metrics`` Metric rows each, bulk-inserted through the models
   (``session.execute(insert(Model), rows)``);
3. the app (``create_app`` + the runs API and /ws/runs) on a real threaded werkzeug server
   (127.0.0.1, a free port, in a thread of this process — as ``weldsim portal`` serves it, no
   agent host), and a real HTTP client (``http.client``, a new connection per request — the
   server speaks HTTP/1.0 — ``Authorization: Bearer``): after ``--warmup`` untimed requests,
   ``--requests`` timed GETs of each of
     list first page   /api/v1/projects/{p}/runs                 (20 newest of 10,000)
     list filtered     /api/v1/projects/{p}/runs?state=failed    (first page of the ~15 %)
     list deep page    /api/v1/projects/{p}/runs?page=<last>     (offset 9,980)
     list all runs     /api/v1/runs                              (every visible run, a join)
     get one run       /api/v1/runs/{id}                         (with its metrics; a random run each time)
   → p50 / p95 / max (ms), time to the whole body read;
4. WebSocket latency, once per hub poll interval in ``--hub-poll-s`` (the portal's default
   is 0.5 s, ProgressHub.poll_s / AgentHost hub_poll_s): a Run row ``running`` of the user's
   case and a run directory without a job (case.json, attempts.json, executor.json); a writer
   PROCESS (this script, ``--writer-child``; HDF5 SWMR wants the writer and the hub's reader
   in different processes, as in production) creates progress.h5 with
   ``weldsim_hpc.checkpoint.start_attempt`` and writes one row; a real WebSocket client
   (simple-websocket) connects to /ws/runs/<id>, authenticates with the token in its first
   message and receives that row (the history); then the writer writes ``--rows`` progress
   rows at ``--rate-hz`` on average (intervals jittered 0.5-1.5 periods, so rows fall at every
   phase of the hub's poll; ``.progress(..., force=True)``, which flushes), then a
   ``completed`` status. For each row: latency = the client's receive time (``time.time()``
   after ``receive()`` returns) − the row's own wall_s (the writer's ``time.time()`` stored in
   the row; the message carries it as ``started_unix + elapsed_s``) — the same clock, one
   machine. → p50 / p95 / max; target p95 ≤ 0.5 s.

Writes results/portal_api.{json,md}. Figures are recorded, never asserted (exit 0 unless
something failed outright); the machine is shared (load average recorded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import logging
import os
import random
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT))

STATE_MIX = (("completed", 70), ("failed", 15), ("cancelled", 5), ("lost", 5), ("interrupted", 5))
METRIC_NAMES = (("T_max_K", "K"), ("compute_time_s", "s"), ("f_working_Hz", "Hz"), ("probe.tip.T_K", "K"),
                ("u_max_m", "m"))
TARGET_WS_P95_S = 0.5


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10_000, help="Run rows to store")
    p.add_argument("--metrics", type=int, default=3, help="Metric rows per run (at most 5)")
    p.add_argument("--requests", type=int, default=300, help="timed requests per endpoint")
    p.add_argument("--warmup", type=int, default=10, help="untimed requests per endpoint first")
    p.add_argument("--rows", type=int, default=100, help="progress rows for the WebSocket latency")
    p.add_argument("--rate-hz", type=float, default=5.0, help="progress rows per second")
    p.add_argument("--hub-poll-s", default="0.5,0.2",
                   help="comma-separated ProgressHub poll intervals to measure (0.5 = the portal's default)")
    p.add_argument("--postgres", action="store_true", help="also on a fresh PostgreSQL database")
    p.add_argument("--postgres-only", action="store_true", help="only PostgreSQL")
    p.add_argument("--postgres-admin-url", default=os.environ.get(
        "WELDSIM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "portal_api"))
    p.add_argument("--writer-child", nargs=4, metavar=("RUN_DIR", "RUN_ID", "ROWS", "RATE_HZ"),
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- writer process

def writer_child(run_dir: str, run_id: str, rows: int, rate_hz: float) -> int:
    """Create progress.h5, write row 0, say "ready", wait for "go", write `rows` rows at `rate_hz`."""
    from weldsim_hpc.checkpoint import start_attempt
    from weldsim_hpc.states import RunState

    w = start_attempt(run_dir, is_writer=True, run_id=run_id, case_hash="c" * 64, mesh_hash="m" * 64)
    started = float(w._file.attrs["started_unix"])
    w.progress(0, 0.0, 0.0, "time_step", "step 0", force=True)
    print(json.dumps({"ready": True, "started_unix": started}), flush=True)
    if sys.stdin.readline().strip() != "go":
        w.close()
        return 1
    period = 1.0 / rate_hz
    walls: list[float] = []
    rng = random.Random(run_id)
    due = time.monotonic()
    for i in range(1, rows + 1):
        # jittered (0.5-1.5 periods): a fixed 5 Hz would lock on to the hub's poll (0.2 s, 0.5 s)
        due += period * rng.uniform(0.5, 1.5)
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        w.progress(i, 0.01 * i, 100.0 * i / (rows + 1), "time_step", f"step {i}", force=True)
        walls.append(float(w._file["progress"][-1]["wall_s"]))
    time.sleep(0.5)
    w.status(RunState.COMPLETED, "done")
    w.close()
    print(json.dumps({"walls": walls}), flush=True)
    return 0


# --------------------------------------------------------------------------- helpers

def stats_ms(samples_s: list[float]) -> dict:
    xs = sorted(samples_s)
    n = len(xs)

    def q(p: float) -> float:  # nearest-rank percentile
        return xs[min(n - 1, max(0, int(round(p * n + 0.5)) - 1))]

    return {"n": n, "p50_ms": 1000 * statistics.median(xs), "p95_ms": 1000 * q(0.95), "max_ms": 1000 * xs[-1],
            "mean_ms": 1000 * statistics.fmean(xs), "min_ms": 1000 * xs[0]}


def machine() -> dict:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass

    def out(cmd):
        try:
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    import h5py
    import sqlalchemy
    import werkzeug

    dirty = bool(out(["git", "status", "--porcelain", "--", "portal", "weldsim_hpc", "benchmarks/portal_api.py"]))
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "host": os.uname().nodename,
            "python": sys.version.split()[0], "flask": _version("flask"),
            "werkzeug": getattr(werkzeug, "__version__", None) or _version("werkzeug"),
            "sqlalchemy": sqlalchemy.__version__, "h5py": h5py.__version__, "sqlite": _sqlite_version(),
            "postgres": out(["psql", "--version"]),
            "git_commit": out(["git", "rev-parse", "--short", "HEAD"]), "git_dirty": dirty}


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


# --------------------------------------------------------------------------- databases

class Postgres:
    """A fresh database weldsim_bench_<random> through the admin URL; dropped by `drop()`."""

    def __init__(self, admin_url: str):
        import psycopg
        from sqlalchemy.engine import make_url

        self.admin_url = make_url(admin_url)
        self.name = f"weldsim_bench_{secrets.token_hex(6)}"
        self._admin = psycopg.connect(self.admin_url.set(drivername="postgresql")
                                      .render_as_string(hide_password=False), autocommit=True)
        from psycopg import sql

        self._sql = sql
        self._admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = self.admin_url.set(drivername="postgresql+psycopg", database=self.name) \
            .render_as_string(hide_password=False)

    def drop(self) -> None:
        sql = self._sql
        self._admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
        self._admin.close()


def populate(app, n_runs: int, n_metrics: int, seed: int) -> dict:
    """Migrate, then one user (+token), project, case and `n_runs` runs with `n_metrics` metrics each."""
    import flask_migrate
    from sqlalchemy import func, insert, select
    from werkzeug.security import generate_password_hash

    from portal.extensions import db
    from portal.models import Metric, Project, Run, SimulationCase, User
    from portal.services import accounts
    from weldsim_hpc.run_paths import new_run_id

    rng = random.Random(seed)
    out: dict = {}
    with app.app_context():
        try:
            t = time.perf_counter()
            flask_migrate.upgrade()
            out["migrate_s"] = time.perf_counter() - t
            t = time.perf_counter()
            user = User(email="bench@example.com", password_hash=generate_password_hash("bench-password-1"))
            db.session.add(user)
            db.session.flush()
            project = Project(owner_id=user.id, name="Bench", application_type="li_battery_tab")
            db.session.add(project)
            db.session.flush()
            case = SimulationCase(project_id=project.id, name="tab", spec={"name": "tab"})
            db.session.add(case)
            db.session.commit()
            token = accounts.create_token(db.session, user, "bench")[1]
            out.update(user_id=user.id, project_id=project.id, case_id=case.id, token=token)

            states = [s for s, w in STATE_MIX for _ in range(w)]
            now = dt.datetime.now(dt.timezone.utc)
            run_ids: set[str] = set()
            while len(run_ids) < n_runs:
                run_ids.add(new_run_id())
            ordered = sorted(run_ids)
            rng.shuffle(ordered)
            runs, metrics = [], []
            for i, run_id in enumerate(ordered):
                submitted = now - dt.timedelta(seconds=365 * 86400 * (i + 1) / n_runs + rng.random())
                started = submitted + dt.timedelta(seconds=rng.uniform(1, 60))
                state = rng.choice(states)
                runs.append({"run_id": run_id, "project_id": project.id, "case_id": case.id, "study_id": None,
                             "submitted_by_id": user.id, "state": state, "executor": "local",
                             "ntasks": rng.choice((1, 2, 4)), "attempts": 1, "scheduler_job_ids": [],
                             "reason": None if state == "completed" else f"run {state}",
                             "exit_code": 0 if state == "completed" else 3,
                             "progress_percent": 100.0 if state == "completed" else rng.uniform(0, 99),
                             "phase": "time_step", "compute_time_s": rng.uniform(5, 600),
                             "submitted_at": submitted, "started_at": started,
                             "finished_at": started + dt.timedelta(seconds=rng.uniform(5, 600))})
                for name, unit in METRIC_NAMES[:n_metrics]:
                    metrics.append({"run_id": run_id, "name": name, "value": rng.uniform(1, 1e4), "unit": unit})
            db.session.execute(insert(Run), runs)
            db.session.execute(insert(Metric), metrics)
            db.session.commit()
            out["insert_s"] = time.perf_counter() - t
            out["runs"] = db.session.scalar(select(func.count()).select_from(Run))
            out["metrics"] = db.session.scalar(select(func.count()).select_from(Metric))
            out["failed"] = db.session.scalar(select(func.count()).select_from(Run).where(Run.state == "failed"))
            out["run_ids"] = ordered
        finally:
            db.session.remove()
    return out


# --------------------------------------------------------------------------- HTTP

class LiveServer:
    """The app on a threaded werkzeug server (127.0.0.1, a free port) in a thread."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="bench-server", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def get(port: int, path: str, token: str) -> tuple[float, int, int]:
    """(seconds to the whole body, status, body bytes) of one GET on a new connection."""
    t = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    return time.perf_counter() - t, resp.status, len(body)


def time_api(port: int, data: dict, args) -> dict:
    p = data["project_id"]
    last_page = (data["runs"] + 19) // 20
    rng = random.Random(args.seed + 1)
    endpoints = [
        ("list first page", lambda: f"/api/v1/projects/{p}/runs"),
        ("list filtered (state=failed)", lambda: f"/api/v1/projects/{p}/runs?state=failed"),
        (f"list deep page (page={last_page})", lambda: f"/api/v1/projects/{p}/runs?page={last_page}"),
        ("list all runs (/runs)", lambda: "/api/v1/runs"),
        ("get one run (+metrics)", lambda: f"/api/v1/runs/{rng.choice(data['run_ids'])}"),
    ]
    out = {}
    for name, path_of in endpoints:
        for _ in range(args.warmup):
            _, status, _ = get(port, path_of(), data["token"])
            if status != 200:
                raise RuntimeError(f"{name}: GET {path_of()} answered {status}")
        times, sizes = [], []
        for _ in range(args.requests):
            path = path_of()
            s, status, size = get(port, path, data["token"])
            if status != 200:
                raise RuntimeError(f"{name}: GET {path} answered {status}")
            times.append(s)
            sizes.append(size)
        out[name] = {**stats_ms(times), "path": path_of() if "get" not in name else "/api/v1/runs/<random id>",
                     "body_bytes_median": statistics.median(sizes)}
        print(f"    {name:34s} p50 {out[name]['p50_ms']:7.1f} ms  p95 {out[name]['p95_ms']:7.1f} ms  "
              f"max {out[name]['max_ms']:7.1f} ms", flush=True)
    # the deep page and filtered totals, for the record
    return out


# --------------------------------------------------------------------------- WebSocket

def time_ws(app, port: int, data: dict, args, poll_s: float) -> dict:
    from simple_websocket import Client, ConnectionClosed

    from portal.agent_host import hub_of
    from portal.extensions import db
    from portal.models import Run
    from weldsim_hpc.executors.record import Resources, RunRecord, write_record
    from weldsim_hpc.run_paths import RunPaths, new_run_id, write_json_atomic
    from weldsim_hpc.states import RunState

    hub = hub_of(app)
    hub.poll_s = poll_s  # the hub thread reads it every loop
    settings = app.extensions["weldsim"]
    run_id = new_run_id()
    with app.app_context():
        try:
            db.session.add(Run(run_id=run_id, project_id=data["project_id"], case_id=data["case_id"],
                               submitted_by_id=data["user_id"], state="running", executor="local", ntasks=1,
                               attempts=1, scheduler_job_ids=[]))
            db.session.commit()
        finally:
            db.session.remove()
    paths = RunPaths.for_id(settings.runs_root, run_id)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.results_dir.mkdir(exist_ok=True)
    write_json_atomic(paths.case_json, {"name": "bench"})
    write_json_atomic(paths.attempts_json, [])
    write_record(paths, RunRecord(run_id=run_id, executor="local", resources=Resources(ntasks=1),
                                  state=RunState.RUNNING))

    child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--writer-child", str(paths.root),
                              run_id, str(args.rows), str(args.rate_hz)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    client = None
    try:
        ready = json.loads(child.stdout.readline())
        started_unix = ready["started_unix"]
        client = Client.connect(f"ws://127.0.0.1:{port}/ws/runs/{run_id}")
        client.send(json.dumps({"type": "auth", "token": data["token"]}))
        first = json.loads(client.receive(timeout=10))
        assert first["type"] == "progress" and first["step"] == 0, first
        # a second, in-process subscriber of the same channel (the same reader): when the hub
        # queues each row, i.e. the hub's share of the end-to-end latency
        hub_seen: dict[int, float] = {}
        stop_tap = threading.Event()

        def tap() -> None:
            with hub.subscribe(run_id) as sub:
                while not stop_tap.is_set() and not sub.ended:
                    m = sub.get(timeout=0.05)
                    if m is not None and m["type"] == "progress":
                        hub_seen.setdefault(m["step"], time.time() - (started_unix + m["elapsed_s"]))

        tapper = threading.Thread(target=tap, name="bench-hub-tap", daemon=True)
        tapper.start()
        child.stdin.write("go\n")
        child.stdin.flush()
        received: dict[int, float] = {}
        final = None
        deadline = time.monotonic() + args.rows / args.rate_hz + 60
        while time.monotonic() < deadline:
            try:
                text = client.receive(timeout=1.0)
            except ConnectionClosed:
                break
            now = time.time()
            if text is None:
                continue
            msg = json.loads(text)
            if msg["type"] == "progress":
                received[msg["step"]] = now - (started_unix + msg["elapsed_s"])
            else:
                final = msg
        stop_tap.set()
        tapper.join(timeout=10)
        out_line = child.stdout.readline()
        child.wait(timeout=30)
        walls = json.loads(out_line)["walls"]
    finally:
        if client is not None and client.connected:
            try:
                client.close()
            except ConnectionClosed:
                pass
        if child.poll() is None:
            child.kill()
            child.wait()
    lat = [received[i] for i in range(1, args.rows + 1) if i in received]
    r = {"hub_poll_s": poll_s, "run_id": run_id, "rows_written": len(walls), "rows_received": len(lat),
         "final_message": final and final["type"] + "/" + str(final.get("status")),
         "rate_hz": args.rate_hz, **{k.replace("_ms", "_s"): v / 1000 for k, v in stats_ms(lat).items()
                                       if k.endswith("_ms")}, "n": len(lat),
         "latencies_s": lat}
    hub_lat = [hub_seen[i] for i in range(1, args.rows + 1) if i in hub_seen]
    if hub_lat:
        r["hub_queue"] = {k.replace("_ms", "_s"): v / 1000 for k, v in stats_ms(hub_lat).items() if k.endswith("_ms")}
        r["hub_queue"]["n"] = len(hub_lat)
    r["meets_target"] = r["p95_s"] <= TARGET_WS_P95_S
    print(f"    hub poll {poll_s:.2f} s: {len(lat)}/{args.rows} rows, p50 {r['p50_s']:.3f} s  p95 {r['p95_s']:.3f} s  "
          f"max {r['max_s']:.3f} s; in the hub's queue p50 {r.get('hub_queue', {}).get('p50_s', float('nan')):.3f} s "
          f"p95 {r.get('hub_queue', {}).get('p95_s', float('nan')):.3f} s  (target p95 <= {TARGET_WS_P95_S} s: {'met' if r['meets_target'] else 'NOT met'})",
          flush=True)
    return r


# --------------------------------------------------------------------------- one backend

def bench_backend(backend: str, args) -> dict:
    from portal import create_app
    from portal import ws
    from portal.agent_host import hub_of
    from portal.api import runs as runs_api
    from portal.extensions import db

    work = Path(tempfile.mkdtemp(prefix=f"weldsim_bench_portal_{backend}_"))
    pg = None
    try:
        if backend == "postgres":
            pg = Postgres(args.postgres_admin_url)
            url = pg.url
        else:
            url = f"sqlite:///{work / 'portal.db'}"
        app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": work / "instance", "SECRET_KEY": "bench-secret"})
        runs_api.init_app(app)
        ws.init_app(app)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
        print(f"[{backend}] populating {args.runs} runs …", flush=True)
        data = populate(app, args.runs, args.metrics, args.seed)
        print(f"    migrate {data['migrate_s']:.2f} s, insert {data['runs']} runs + {data['metrics']} metrics "
              f"{data['insert_s']:.2f} s", flush=True)
        res = {"backend": backend, "database": pg.name if pg else "portal.db (temp dir)",
               "populate": {k: data[k] for k in ("migrate_s", "insert_s", "runs", "metrics", "failed")}}
        try:
            with LiveServer(app) as server:
                print(f"[{backend}] API: {args.requests} requests per endpoint …", flush=True)
                load0 = os.getloadavg()[0]
                res["api"] = time_api(server.port, data, args)
                res["api_loadavg"] = [load0, os.getloadavg()[0]]
                print(f"[{backend}] WebSocket: {args.rows} rows at {args.rate_hz} Hz …", flush=True)
                res["ws"] = []
                for poll in [float(x) for x in args.hub_poll_s.split(",") if x.strip()]:
                    load0 = os.getloadavg()[0]
                    w = time_ws(app, server.port, data, args, poll)
                    w["loadavg"] = [load0, os.getloadavg()[0]]
                    res["ws"].append(w)
        finally:
            hub_of(app).stop()
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
        return res
    finally:
        if pg is not None:
            pg.drop()
            print(f"    dropped {pg.name}", flush=True)
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- report

def markdown(rep: dict) -> str:
    m = rep["machine"]
    lines = ["# Portal API and WebSocket latency benchmark", "",
             f"Date {rep['date']}; {m['cpu_model']}, nproc {m['nproc']} (shared machine); Python {m['python']}, "
             f"Flask {m['flask']}, werkzeug {m['werkzeug']}, SQLAlchemy {m['sqlalchemy']}, SQLite {m['sqlite']}"
             + (f", {m['postgres']}" if any(b['backend'] == 'postgres' for b in rep["backends"]) else "")
             + f"; commit {m['git_commit']}" + (" + uncommitted changes" if m["git_dirty"] else "") + ". "
             f"Load average (1 min) before / after: {rep['loadavg_before'][0]:.2f} / {rep['loadavg_after'][0]:.2f}.",
             "", f"Command: `{rep['command']}`", "",
             f"{rep['runs']} Run rows ({rep['metrics_per_run']} metrics each) of one user's one case, bulk-inserted; "
             "the app on a threaded werkzeug server in the benchmark's process; a new HTTP connection per request "
             f"(http.client, bearer token); {rep['warmup']} untimed requests, then {rep['requests']} timed, per "
             "endpoint. Milliseconds to the whole body.", "",
             "| backend | endpoint | p50 ms | p95 ms | max ms | body bytes |", "|---|---|---|---|---|---|"]
    for b in rep["backends"]:
        for name, s in b["api"].items():
            lines.append(f"| {b['backend']} | {name} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | {s['max_ms']:.1f} | "
                         f"{s['body_bytes_median']:.0f} |")
    lines += ["", f"Progress row → WebSocket client: {rep['rows']} rows at {rep['rate_hz']:g} Hz written by a "
                  "separate writer process (start_attempt + .progress(force=True)); latency = the client's receive "
                  "time − the row's wall_s. The hub polls progress.h5 every `hub poll` seconds (the portal's "
                  "default 0.5 s); the WebSocket handler additionally waits up to 0.2 s (portal.ws.RECEIVE_S) for "
                  "a client message between checks of its queue.", "",
              f"| backend | hub poll s | rows received | p50 s | p95 s | max s | target p95 ≤ {TARGET_WS_P95_S} s | "
              "in the hub's queue: p50 / p95 / max s |",
              "|---|---|---|---|---|---|---|---|"]
    for b in rep["backends"]:
        for w in b["ws"]:
            h = w.get("hub_queue")
            lines.append(f"| {b['backend']} | {w['hub_poll_s']:g} | {w['rows_received']}/{w['rows_written']} | "
                         f"{w['p50_s']:.3f} | {w['p95_s']:.3f} | {w['max_s']:.3f} | "
                         f"{'met' if w['meets_target'] else 'NOT met'} | "
                         + (f"{h['p50_s']:.3f} / {h['p95_s']:.3f} / {h['max_s']:.3f} |" if h else "– |"))
    lines += ["", "\"In the hub's queue\": a second subscriber inside the portal process (the same channel and "
                  "reader) timestamps each row when the hub queues it — the hub poll's share; the rest is the "
                  "WebSocket handler's wait (it checks its queue between 0.2-s waits for client messages) and the "
                  "send."]
    lines += ["", "Populate: " + "; ".join(
        f"{b['backend']}: migrations {b['populate']['migrate_s']:.1f} s, insert {b['populate']['runs']} runs + "
        f"{b['populate']['metrics']} metrics {b['populate']['insert_s']:.1f} s ({b['populate']['failed']} failed)"
        for b in rep["backends"]) + ". Recorded, not asserted."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.writer_child:
        run_dir, run_id, rows, rate = args.writer_child
        return writer_child(run_dir, run_id, int(rows), float(rate))
    args.metrics = max(0, min(args.metrics, len(METRIC_NAMES)))
    backends = ["postgres"] if args.postgres_only else ["sqlite"] + (["postgres"] if args.postgres else [])
    load0 = os.getloadavg()
    t0 = time.time()
    results = [bench_backend(b, args) for b in backends]
    report = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
              "command": shlex.join([".venv/bin/python", "benchmarks/portal_api.py",
                                     *(argv if argv is not None else sys.argv[1:])]),
              "runs": args.runs, "metrics_per_run": args.metrics, "requests": args.requests, "warmup": args.warmup,
              "rows": args.rows, "rate_hz": args.rate_hz, "target_ws_p95_s": TARGET_WS_P95_S,
              "loadavg_before": load0, "loadavg_after": os.getloadavg(), "elapsed_s": time.time() - t0,
              "backends": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    text = markdown(report)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
