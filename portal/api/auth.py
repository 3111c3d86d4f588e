"""Authentication of /api/ requests, and /api/v1/auth: login, logout, me, tokens.

Two ways in:

* ``Authorization: Bearer <token>`` — API tokens for scripts (``flask --app portal tokens
  create EMAIL`` or POST /api/v1/auth/tokens). No cookies, so no CSRF check.
* the browser session cookie (``weldsim_session``), opened by POST /api/v1/auth/login
  (JSON) or the /login form. A session request that changes state (POST, PUT, PATCH,
  DELETE) must echo the session's CSRF token in the ``X-CSRF-Token`` header; login and
  GET /api/v1/auth/me hand it out.

`authenticate_request` runs before every /api/ view: it answers 401 without valid
credentials (for unknown URLs too, so they reveal nothing), 403 without the CSRF token,
404 for a project, case … in the URL the caller may not see (portal.api.guards), and
refuses bodies that are not a JSON object (415 wrong type, 400 malformed). Only the
endpoints in PUBLIC_ENDPOINTS skip the credential check.

Example (a script)::

    curl -H "Authorization: Bearer $WELDSIM_TOKEN" http://host/api/v1/projects
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Literal

from flask import Response, g, request, session
from pydantic import BaseModel, ConfigDict, Field

from ..extensions import db
from ..models import User
from ..services import accounts
from ..services.errors import Forbidden, Unauthorized
from .common import Name, Strict, api_blueprint, current_user, json_response, no_content
from .errors import API_PREFIX, error_response
from .guards import check_path_objects

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "X-CSRF-Token"
#: endpoints reachable without credentials
PUBLIC_ENDPOINTS = {"auth_login.login", "openapi_json"}
#: endpoints whose body is not JSON (file uploads): they check their own body and size
NON_JSON_ENDPOINTS: set[str] = set()

AUTH_TAG = "Log in and out (browser session), who am I, API tokens for scripts"
bp = api_blueprint("auth", "/auth", AUTH_TAG)
login_bp = api_blueprint("auth_login", "/auth", AUTH_TAG, tag="auth", public=True)


# --- the session --------------------------------------------------------------------------

def csrf_token() -> str:
    """The CSRF token of this browser session (made on first use)."""
    token = session.get("csrf_token")
    if not isinstance(token, str) or len(token) < 32:
        token = session["csrf_token"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(given: str | None) -> bool:
    expected = session.get("csrf_token")
    return isinstance(given, str) and isinstance(expected, str) and secrets.compare_digest(given, expected)


def start_session(user: User) -> str:
    """Log `user` in on this browser session; returns the new CSRF token."""
    session.clear()
    session["user_id"] = user.id
    session["auth"] = accounts.session_fingerprint(user)
    return csrf_token()


# --- the hook -------------------------------------------------------------------------------

def authenticate_request() -> Response | None:
    """before_request for /api/: credentials, CSRF, then the JSON body (see module docstring)."""
    if not request.path.startswith(API_PREFIX):
        return None
    g.user, g.auth = None, None
    if request.endpoint not in PUBLIC_ENDPOINTS:
        g.user, g.auth = _credentials()
        if g.auth == "session" and request.method in UNSAFE_METHODS and not csrf_ok(request.headers.get(CSRF_HEADER)):
            raise Forbidden(f"missing or wrong {CSRF_HEADER} header: send the csrf_token that login or "
                            "GET /api/v1/auth/me gave (scripts: use a bearer token instead)")
        check_path_objects(g.user)
    return _check_json_body()


def _credentials() -> tuple[User, str]:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must read 'Bearer <API token>'")
        return accounts.user_for_token(db.session, token.strip()), "token"
    if "user_id" in session:
        user = accounts.user_for_session(db.session, session.get("user_id"), session.get("auth"))
        if user is None:
            session.clear()
            raise Unauthorized("your session has ended (logged out, password changed or account disabled): "
                               "log in again")
        return user, "session"
    raise Unauthorized("log in (POST /api/v1/auth/login) or send 'Authorization: Bearer <API token>' "
                       "(make one with `flask --app portal tokens create EMAIL`)")


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _check_json_body() -> Response | None:
    if request.method not in UNSAFE_METHODS or request.endpoint in NON_JSON_ENDPOINTS:
        return None
    data = request.get_data(cache=True)  # 413 beyond MAX_CONTENT_LENGTH
    if not data.strip():
        return None
    if not request.is_json:
        return error_response(415, "unsupported_media_type", "send the body as JSON with the header "
                              f"'Content-Type: application/json' (got {request.mimetype or 'none'!r})")
    try:
        obj = json.loads(data, parse_constant=_no_constants)
    except RecursionError:
        return error_response(400, "bad_request", "malformed JSON: nested too deeply")
    except ValueError as exc:
        return error_response(400, "bad_request", f"malformed JSON: {exc}")
    if not isinstance(obj, dict):
        return error_response(400, "bad_request", f"the request body must be a JSON object, not {type(obj).__name__}")
    return None


# --- /api/v1/auth -----------------------------------------------------------------------------

class LoginBody(Strict):
    email: str = Field(max_length=255)
    password: str = Field(max_length=accounts.MAX_PASSWORD_LENGTH)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    is_admin: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None


class MeOut(BaseModel):
    user: UserOut
    auth: Literal["session", "token"] = Field(description="how this request was authenticated")
    csrf_token: str | None = Field(description=f"browser sessions: send it as {CSRF_HEADER} on POST/PATCH/PUT/DELETE")


class TokenBody(Strict):
    name: Name = Field(max_length=120)
    expires_in_days: int | None = Field(None, ge=1, le=accounts.MAX_TOKEN_DAYS, description="null: never expires")


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None
    revoked: bool


class TokenCreatedOut(TokenOut):
    token: str = Field(description="the token itself: shown this once, stored only as a hash")


class TokenList(BaseModel):
    items: list[TokenOut]


class TokenPath(BaseModel):
    token_id: int


@login_bp.post("/login", responses={200: MeOut})
def login(body: LoginBody):
    """Open a browser session (cookie); the answer carries the CSRF token."""
    user = accounts.authenticate(db.session, body.email, body.password)
    token = start_session(user)
    return json_response(MeOut, {"user": user, "auth": "session", "csrf_token": token})


@bp.post("/logout", responses={204: None})
def logout():
    """End the browser session (a bearer token stays valid: revoke it to end it)."""
    session.clear()
    return no_content()


@bp.get("/me", responses={200: MeOut})
def me():
    """The user of this request."""
    token = csrf_token() if g.auth == "session" else None
    return json_response(MeOut, {"user": current_user(), "auth": g.auth, "csrf_token": token})


@bp.get("/tokens", responses={200: TokenList})
def list_tokens():
    """Your API tokens (never the tokens themselves)."""
    return json_response(TokenList, {"items": accounts.list_tokens(db.session, current_user())})


@bp.post("/tokens", responses={201: TokenCreatedOut})
def create_token(body: TokenBody):
    """A new API token for scripts: `Authorization: Bearer <token>`."""
    row, token = accounts.create_token(db.session, current_user(), body.name, expires_in_days=body.expires_in_days)
    return json_response(TokenCreatedOut, {**TokenOut.model_validate(row).model_dump(), "token": token}, 201)


@bp.delete("/tokens/<int:token_id>", responses={204: None})
def revoke_token(path: TokenPath):
    """Revoke one of your tokens."""
    accounts.revoke_token(db.session, current_user(), path.token_id)
    return no_content()
