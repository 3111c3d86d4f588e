"""Users, passwords and API tokens.

Passwords are hashed with werkzeug (scrypt); a failed login takes as long for an unknown
e-mail as for a wrong password. API tokens are 'wsk_' + 43 random URL-safe characters,
shown once and stored only as their SHA-256 hex digest, so a request finds its token by
equality. A token is refused once revoked, after `expires_at`, or when its user is
disabled. `session_fingerprint` ties a browser session to the password it was opened
with: changing the password ends every session.

Example::

    user = create_user(session, "eng@example.com", "a long password", is_admin=False)
    token_row, token = create_token(session, user, "laptop")
    assert user_for_token(session, token) == user
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from ..models import ApiToken, User, utcnow
from .errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from .names import check_name

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
TOKEN_PREFIX = "wsk_"
TOKEN_BYTES = 32
#: last_used_at is written at most this often per token (a write per request is too many)
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
MAX_TOKEN_DAYS = 3650


def normalise_email(email: str) -> str:
    """The stored form of an e-mail address (stripped, lower case); Invalid if it is none."""
    text = email.strip().lower() if isinstance(email, str) else ""
    local, at, domain = text.partition("@")
    if not (local and at and domain) or any(ch.isspace() for ch in text) or len(text) > 255:
        raise Invalid(f"{email!r} is not an e-mail address", field="email")
    return text


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"must be at least {MIN_PASSWORD_LENGTH} characters", field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise Invalid(f"must be at most {MAX_PASSWORD_LENGTH} characters", field="password")
    return password


def create_user(session: Session, email: str, password: str, *, is_admin: bool = False) -> User:
    """A new active user; Conflict if the e-mail address is taken."""
    email = normalise_email(email)
    check_password(password)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user {email} exists already", field="email")
    user = User(email=email, password_hash=generate_password_hash(password), is_admin=is_admin)
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a user {email} exists already", field="email") from None
    return user


def get_user_by_email(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise NotFound(f"no user {email.strip().lower()}", field="email")
    return user


def set_password(session: Session, user: User, password: str) -> None:
    """Replace the password (which ends the user's browser sessions)."""
    user.password_hash = generate_password_hash(check_password(password))
    session.commit()


@functools.cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_hex(16))


def authenticate(session: Session, email: str, password: str) -> User:
    """The user with this e-mail and password; Unauthorized (same words) otherwise.

    A disabled account with the right password gets Forbidden. Records last_login_at.
    """
    try:
        email = normalise_email(email)
    except Invalid:
        email = ""
    user = session.scalar(select(User).where(User.email == email)) if email else None
    ok = check_password_hash(user.password_hash if user else _dummy_hash(), password or "")
    if user is None or not ok:
        raise Unauthorized("wrong e-mail address or password")
    if not user.is_active:
        raise Forbidden("this account is disabled: ask an administrator")
    user.last_login_at = utcnow()
    session.commit()
    return user


def session_fingerprint(user: User) -> str:
    """A short digest of the password hash, kept in the browser session."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


def user_for_session(session: Session, user_id: object, fingerprint: object) -> User | None:
    """The active user a browser session names, or None if it no longer holds."""
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        return None
    user = session.get(User, user_id)
    if user is None or not user.is_active or not isinstance(fingerprint, str) \
            or not secrets.compare_digest(fingerprint, session_fingerprint(user)):
        return None
    return user


# --- API tokens ---------------------------------------------------------------------------

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, user: User, name: str, *,
                 expires_in_days: int | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`: (row, the token text — shown once, never stored)."""
    name = check_name(name, "name", max_length=120)
    expires_at = None
    if expires_in_days is not None:
        if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int) \
                or not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
            raise Invalid(f"must be a whole number of days from 1 to {MAX_TOKEN_DAYS}", field="expires_in_days")
        expires_at = utcnow() + dt.timedelta(days=expires_in_days)
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    row = ApiToken(user=user, name=name, token_hash=hash_token(token), expires_at=expires_at)
    session.add(row)
    session.commit()
    return row, token


def user_for_token(session: Session, token: str) -> User:
    """The active user owning this valid token; Unauthorized otherwise."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token))) \
        if token.startswith(TOKEN_PREFIX) else None
    now = utcnow()
    if row is None or row.revoked:
        raise Unauthorized("invalid or revoked API token")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("this API token has expired: create a new one")
    if not row.user.is_active:
        raise Unauthorized("the account of this API token is disabled")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.commit()
    return row.user


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)))


def get_token(session: Session, user: User, token_id: int) -> ApiToken:
    """One of `user`'s tokens (admins: anyone's); NotFound for others'."""
    row = session.get(ApiToken, token_id) if isinstance(token_id, int) and 0 < token_id < 2**63 else None
    if row is None or (row.user_id != user.id and not user.is_admin):
        raise NotFound(f"API token {token_id} not found")
    return row


def revoke_token(session: Session, user: User, token_id: int) -> ApiToken:
    """Revoke one of `user`'s tokens (admins: anyone's); NotFound for others'."""
    row = get_token(session, user, token_id)
    row.revoked = True
    session.commit()
    return row
