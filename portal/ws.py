"""/ws/runs/<run_id>: a run's live progress over a WebSocket (flask-sock); /ws/workflows/<id>
the same for a workflow's nodes (portal.workflow_runner.WorkflowSubscription).

Messages (DESIGN.md, "Progress messages"), server → client, JSON text frames::

    {"type": "progress", "run_id", "percent", "phase", "message", "elapsed_s", "step", "t", "residual"}
    {"type": "completed", "run_id", "status": "completed" | "cancelled", "compute_time_s", "metrics_summary"}
    {"type": "error", "run_id", "status": "failed" | "lost" | "interrupted", "error"}
    {"type": "pong"}                                   — the answer to a client's {"type": "ping"}

A client first gets the history of the current attempt (a late joiner sees the whole
curve), then new messages as the job writes them, then one terminal message, after
which the server closes the connection (1000). They come from the process's
`ProgressHub` — one progress.h5 reader per run however many clients watch; a run whose
preparation failed (it never reached the agent) ends with the error its row records.
The server pings every 25 s (SOCK_SERVER_OPTIONS), so a vanished client is dropped.

Authentication: the browser session cookie, or — for scripts, which cannot set headers
on a WebSocket from a browser — an API token in the FIRST message, within
AUTH_TIMEOUT_S seconds: ``{"type": "auth", "token": "wsk_…"}`` (an ``Authorization:
Bearer`` header on the handshake works too). Without credentials the server closes with
1008 (policy violation); a run the user may not see closes with 4404 — the same as a run
that does not exist.

The Origin header, when a client sends one (browsers always do), must be the portal's
own origin: one of app.config["WS_ALLOWED_ORIGINS"] if set, else the origin of the host
the request was made to (SERVER_NAME if configured, else the Host header). Anything else
is refused with 403 before the handshake: another site's page cannot open a stream with
the user's cookie.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, request, session
from flask_sock import Sock

from .agent_host import hub_of
from .extensions import db
from .models import User
from .services import accounts, runs
from .services.errors import NotFound, Unauthorized

log = logging.getLogger("weldsim.portal.ws")

AUTH_TIMEOUT_S = 5.0
RECEIVE_S = 0.1  # how long a connection waits for a client message between sends
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_NOT_FOUND = 1000, 1001, 1008, 4404

bp = Blueprint("ws", __name__)
sock = Sock()


def allowed_origins() -> set[str]:
    """The origins a WebSocket may come from (scheme://host[:port], lower case)."""
    configured = current_app.config.get("WS_ALLOWED_ORIGINS")
    if configured:
        items = configured.split(",") if isinstance(configured, str) else configured
        return {o.strip().rstrip("/").lower() for o in items if o.strip()}
    host = current_app.config.get("SERVER_NAME") or request.host
    scheme = "https" if request.scheme in ("https", "wss") else "http"
    origins = {f"{scheme}://{host}".lower()}
    port = request.environ.get("SERVER_PORT")
    if ":" not in host.rsplit("]", 1)[-1] and port:  # a Host without its port (some clients): the server's
        origins.add(f"{scheme}://{host}:{port}".lower())
    return origins


def origin_allowed(origin: str | None) -> bool:
    """True for no Origin (not a browser) or one of `allowed_origins()`."""
    if origin is None:
        return True
    parts = urlsplit(origin.strip())
    if not parts.scheme or not parts.netloc:
        return False
    return f"{parts.scheme}://{parts.netloc}".lower() in allowed_origins()


@bp.before_request
def check_origin() -> None:
    if not origin_allowed(request.headers.get("Origin")):
        log.warning("refused a WebSocket from origin %r", request.headers.get("Origin"))
        abort(403, "this origin may not open the portal's WebSockets")


def _user_from_handshake() -> User | None:
    """The user of the session cookie or of an Authorization: Bearer header, or None."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            try:
                return accounts.user_for_token(db.session, token.strip())
            except Unauthorized:
                return None
    if "user_id" in session:
        return accounts.user_for_session(db.session, session.get("user_id"), session.get("auth"))
    return None


def _user_from_first_message(ws) -> User | None:
    """Wait up to AUTH_TIMEOUT_S for {"type": "auth", "token": …}; the token's user or None."""
    text = ws.receive(timeout=AUTH_TIMEOUT_S)
    if text is None:
        return None
    try:
        message = json.loads(text)
    except (TypeError, ValueError):
        return None
    token = message.get("token") if isinstance(message, dict) and message.get("type") == "auth" else None
    if not isinstance(token, str) or not token:
        return None
    try:
        return accounts.user_for_token(db.session, token)
    except Unauthorized:
        return None


def _visible(user: User, run_id: str) -> bool:
    try:
        runs.get_run(db.session, user, run_id)
    except NotFound:
        return False
    return True


@sock.route("/ws/runs/<run_id>", bp=bp)
def run_progress(ws, run_id: str) -> None:
    """Stream a run's progress (see the module docstring)."""
    try:
        user = _user_from_handshake() or _user_from_first_message(ws)
        if user is None:
            ws.close(CLOSE_POLICY, "authentication required: log in, or send "
                                   '{"type": "auth", "token": "<API token>"} first')
            return
        if not _visible(user, run_id):
            ws.close(CLOSE_NOT_FOUND, f"run {run_id} not found")
            return
    finally:
        db.session.remove()  # a stream may last hours: give the connection back to the pool now
    with hub_of(current_app).start().subscribe(run_id) as sub:
        stream(ws, sub)


@sock.route("/ws/workflows/<int:workflow_id>", bp=bp)
def workflow_progress(ws, workflow_id: int) -> None:
    """Stream a workflow's node statuses: same messages, authentication and close codes as
    runs (see portal.workflow_runner.WorkflowSubscription for the workflow's messages)."""
    from .services import workflows
    from .workflow_runner import WorkflowSubscription

    try:
        user = _user_from_handshake() or _user_from_first_message(ws)
        if user is None:
            ws.close(CLOSE_POLICY, "authentication required: log in, or send "
                                   '{"type": "auth", "token": "<API token>"} first')
            return
        try:
            workflows.get_workflow_by_id(db.session, user, workflow_id)
        except NotFound:
            ws.close(CLOSE_NOT_FOUND, f"workflow {workflow_id} not found")
            return
    finally:
        db.session.remove()
    with WorkflowSubscription(current_app._get_current_object(), workflow_id) as sub:
        stream(ws, sub, "workflow")


def stream(ws, sub, what: str = "run") -> None:
    """Send the subscription's messages and answer pings until the terminal message."""
    while True:
        while (message := sub.get()) is not None:
            ws.send(json.dumps(message))
            if sub.ended:
                ws.close(CLOSE_NORMAL, f"the {what} has ended")
                return
        if sub.closed:
            ws.close(CLOSE_GOING_AWAY, "the portal is stopping")
            return
        text = ws.receive(timeout=RECEIVE_S)
        if text is None:
            continue
        try:
            incoming = json.loads(text)
        except (TypeError, ValueError):
            continue
        if isinstance(incoming, dict) and incoming.get("type") == "ping":
            ws.send(json.dumps({"type": "pong"}))


def init_app(app: Flask) -> None:
    """Register /ws/runs/<run_id> on `app` (once)."""
    if "ws" not in app.blueprints:
        # the server pings every 25 s: a client that vanished without closing is noticed
        app.config.setdefault("SOCK_SERVER_OPTIONS", {"ping_interval": 25})
        app.register_blueprint(bp)


__all__ = ["allowed_origins", "init_app", "origin_allowed", "run_progress", "stream", "workflow_progress"]
