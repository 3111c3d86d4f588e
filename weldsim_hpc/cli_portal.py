"""`weldsim portal`: the web portal and the run agent in one process, with embedded defaults.

Starts in this order: the settings (WELDSIM_* environment, see portal.config; the
defaults need nothing: SQLite and the runs root in the instance folder), the database
migrations (`flask db upgrade`, idempotent), the agent host (it adopts the runs root's
unfinished runs and syncs their rows), then a threaded werkzeug server — API, log-in page
and the /ws/runs/<id> WebSockets — on 127.0.0.1:5000 unless told otherwise.

With ``--example`` (the README's main command) it also makes sure a login and the example
project exist — the shipped examples as cases, one run of each submitted on the first
start (portal.example) — prints the login, and prints each example run's state changes.

SIGTERM or Ctrl-C stops serving and following; runs keep going and the next start
adopts them. Exactly one process may host the agent of a runs root: for production use
``gunicorn -w 1 -k gthread --threads 64 'portal.agent_host:create_hosted_app()'`` (see
portal.agent_host), never several workers.

The portal is imported only when the command runs: ``weldsim`` itself needs no Flask.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click

from .cli import _user_errors, console, err_console, main


def _serve(host: str, port: int, example_preset: str | None = None, with_example: bool = False) -> None:
    from flask_migrate import upgrade
    from werkzeug.serving import make_server

    from portal import create_app, ws
    from portal.agent_host import start_host
    from portal.api import runs as runs_api
    from weldsim_hpc.executors.agent import AgentRunning

    app = create_app()
    settings = app.extensions["weldsim"]
    with app.app_context():
        upgrade()
    _log_to_stderr()  # the migrations' logging set-up replaced ours
    ws.init_app(app)
    runs_api.init_app(app)
    server = make_server(host, port, app, threaded=True)  # bind before taking the agent lock
    try:
        host_ = start_host(app)
    except AgentRunning as exc:
        server.server_close()
        raise click.ClickException(f"{exc}: another `weldsim portal` or `weldsim agent` serves it "
                                   "(stop it, e.g. `weldsim agent stop`, or use another WELDSIM_RUNS_ROOT)") from None
    stopping = threading.Event()

    def stop(signum, _frame) -> None:
        if not stopping.is_set():
            stopping.set()
            err_console.print(f"{signal.Signals(signum).name}: stopping (runs keep going)…", highlight=False)
            threading.Thread(target=server.shutdown, name="portal-shutdown", daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    console.print(f"WeldSim portal on http://{host}:{server.server_port} — database "
                  f"{settings.database_url_safe}, runs root {settings.runs_root}, executor {settings.executor}",
                  highlight=False, soft_wrap=True)
    sys.stdout.flush()
    try:
        if with_example:
            _start_example(app, host_, f"http://{host}:{server.server_port}", example_preset, stopping)
        server.serve_forever(poll_interval=0.2)
    finally:
        stopping.set()  # the example runs' follower too
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        host_.stop()
        server.server_close()
    console.print("portal stopped", highlight=False)


def _start_example(app, host_, base: str, preset: str | None, stopping: threading.Event) -> None:
    """Seed the example project (portal.example), print the login, follow its runs."""
    from portal.example import seed_example
    from portal.extensions import db

    settings = app.extensions["weldsim"]
    with app.app_context():
        try:
            login = seed_example(db.session, instance_path=settings.instance_path,
                                 storage_root=settings.storage_root, dispatcher=host_, preset=preset)
        finally:
            db.session.remove()
    what = "submitted" if login.submitted else "from an earlier start"
    console.print(f"Example project: {base}/api/v1/projects/{login.project_id} — {len(login.run_ids)} runs ({what})\n"
                  f"  log in at {base}/login   e-mail {login.email}   password {login.password}\n"
                  f"  API: curl -H 'Authorization: Bearer {login.token}' {base}/api/v1/projects/{login.project_id}/runs",
                  highlight=False, soft_wrap=True)
    sys.stdout.flush()
    threading.Thread(target=_follow_runs, args=(app, login.run_ids, stopping), name="example-runs",
                     daemon=True).start()


def _follow_runs(app, run_ids: tuple[str, ...], stopping: threading.Event, interval_s: float = 1.0) -> None:
    """Print each run's state when it changes (and its metrics when it completes)."""
    from portal.extensions import db
    from portal.models import Metric, Run

    seen: dict[str, str] = {}
    while not stopping.wait(interval_s):
        with app.app_context():
            try:
                rows = db.session.query(Run).filter(Run.run_id.in_(run_ids)).all()
                for run in rows:
                    if seen.get(run.run_id) == run.state:
                        continue
                    seen[run.run_id] = run.state
                    name = run.case.name if run.case is not None else run.run_id
                    line = f"run {run.run_id} ({name}): {run.state}"
                    if run.reason and run.state != "completed":
                        line += f" — {run.reason}"
                    if run.state == "completed":
                        metrics = (db.session.query(Metric).filter(Metric.run_id == run.run_id,
                                                                   Metric.name != "compute_time_s")
                                   .order_by(Metric.id).limit(4).all())
                        line += "".join(f"; {m.name} = {m.value:.6g}" + (f" {m.unit}" if m.unit not in ("", "1") else "")
                                        for m in metrics)
                    console.print(line, highlight=False, soft_wrap=True)
                    sys.stdout.flush()
            except Exception as exc:  # noqa: BLE001 — a busy database: print, try again
                logging.getLogger("weldsim.portal").warning("following the example runs: %s", exc)
            finally:
                db.session.remove()
        if len(seen) == len(run_ids) and all(state in _FINAL for state in seen.values()):
            return


_FINAL = ("completed", "failed", "cancelled", "interrupted", "lost")


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("distributed").setLevel(logging.WARNING)  # dask's cluster start-up chatter


@main.command("portal")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=5000, show_default=True,
              help="port (0: any free port, printed at start)")
@click.option("--example", "with_example", is_flag=True,
              help="also make sure the example project, its runs and a login exist; print the login")
@click.option("--example-preset", default=None, metavar="PRESET",
              help="preset of the example cases (e.g. ci: small meshes; default: the cases as shipped)")
@_user_errors
def portal(host: str, port: int, with_example: bool, example_preset: str | None) -> None:
    """Serve the web portal and host the run agent (Ctrl-C or SIGTERM stops; runs go on)."""
    _log_to_stderr()
    _serve(host, port, example_preset, with_example)


if __name__ == "__main__":  # `python -m weldsim_hpc.cli_portal [--host H] [--port P]`
    main(["portal", *sys.argv[1:]], prog_name="weldsim")
