"""Browser pages outside the API: the log-in form (/login), log-out (/logout) and / .

A minimal HTML form for the browser until the Vue front end takes over; it opens the same
session as POST /api/v1/auth/login. Both forms carry the session's CSRF token, and
`next` only ever redirects within this site.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, redirect, render_template, request, session

from .api.auth import csrf_ok, csrf_token, start_session
from .extensions import db
from .services import accounts
from .services.errors import Forbidden, Unauthorized

bp = Blueprint("web", __name__)


def _safe_next(target: str | None) -> str:
    """A local path to go to after login: never another host, never '//host'."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@bp.get("/")
def index():
    """Until the front end exists: the signed-in user's runs as JSON, else the log-in form."""
    if "user_id" in session and accounts.user_for_session(db.session, session.get("user_id"), session.get("auth")):
        return redirect("/api/v1/runs")
    return redirect("/login?next=/")


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = _safe_next(request.values.get("next"))
    error = None
    status = 200
    if request.method == "POST":
        if not csrf_ok(request.form.get("csrf_token")):
            abort(400, "the form expired: reload the page and log in again")
        try:
            user = accounts.authenticate(db.session, request.form.get("email", ""), request.form.get("password", ""))
        except (Unauthorized, Forbidden) as exc:
            error, status = exc.message, 401 if isinstance(exc, Unauthorized) else 403
        else:
            start_session(user)
            return redirect(next_url)
    return render_template("login.html", csrf_token=csrf_token(), next_url=next_url, error=error,
                           email=request.form.get("email", "")), status


@bp.post("/logout")
def logout():
    if not csrf_ok(request.form.get("csrf_token")):
        abort(400, "the form expired: reload the page")
    session.clear()
    return redirect("/login")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
