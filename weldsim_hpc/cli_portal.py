"""`weldsim portal`: the web portal and the run agent in one process, with embedded defaults.

Starts in this order: the settings (WELDSIM_* environment, see portal.config; the
defaults need nothing: SQLite and the runs root in the instance folder), the database
migrations (`flask db upgrade`, idempotent), the agent host (it adopts the runs root's
unfinished runs and syncs their rows), then a threaded werkzeug server — API, log-in page
and the /ws/runs/<id> WebSockets — on 127.0.0.1:5000 unless told otherwise.

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


def _serve(host: str, port: int) -> None:
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
        server.serve_forever(poll_interval=0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        host_.stop()
        server.server_close()
    console.print("portal stopped", highlight=False)


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("distributed").setLevel(logging.WARNING)  # dask's cluster start-up chatter


@main.command("portal")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=5000, show_default=True,
              help="port (0: any free port, printed at start)")
@_user_errors
def portal(host: str, port: int) -> None:
    """Serve the web portal and host the run agent (Ctrl-C or SIGTERM stops; runs go on)."""
    _log_to_stderr()
    _serve(host, port)


if __name__ == "__main__":  # `python -m weldsim_hpc.cli_portal [--host H] [--port P]`
    main(["portal", *sys.argv[1:]], prog_name="weldsim")
