"""Accounts service: users, password checks, API tokens — without HTTP."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from portal.models import ApiToken, User, utcnow
from portal.services import accounts
from portal.services.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized

from .helpers import PASSWORD, counts, make_user


def test_create_user_hashes_the_password_and_normalises_the_email(db_session):
    user = accounts.create_user(db_session, "  Eng@Example.COM ", "a long password")
    assert user.email == "eng@example.com" and not user.is_admin and user.is_active
    assert user.password_hash.startswith("scrypt:") and "a long password" not in user.password_hash
    assert accounts.authenticate(db_session, "ENG@example.com", "a long password") == user
    assert user.last_login_at is not None


@pytest.mark.parametrize("email, password, field", [
    ("not-an-email", "long enough pw", "email"),
    ("a@b", "short", "password"),
    ("a @b.c", "long enough pw", "email"),
])
def test_create_user_refuses_bad_input(db_session, email, password, field):
    before = counts(db_session)
    with pytest.raises(Invalid) as info:
        accounts.create_user(db_session, email, password)
    assert info.value.field == field
    assert counts(db_session) == before


def test_an_email_is_taken_once(db_session):
    accounts.create_user(db_session, "eng@example.com", "a long password")
    with pytest.raises(Conflict, match="exists already"):
        accounts.create_user(db_session, "ENG@example.com", "another password")


def test_wrong_password_and_unknown_user_get_the_same_answer(db_session):
    make_user(db_session, "eng@example.com")
    with pytest.raises(Unauthorized) as wrong:
        accounts.authenticate(db_session, "eng@example.com", "not the password")
    with pytest.raises(Unauthorized) as unknown:
        accounts.authenticate(db_session, "nobody@example.com", PASSWORD)
    assert str(wrong.value) == str(unknown.value) == "wrong e-mail address or password"


def test_a_disabled_account_cannot_log_in(db_session):
    user = make_user(db_session, "eng@example.com")
    user.is_active = False
    db_session.commit()
    with pytest.raises(Forbidden, match="disabled"):
        accounts.authenticate(db_session, "eng@example.com", PASSWORD)


def test_tokens_are_stored_as_sha256_and_find_their_user(db_session):
    user = make_user(db_session, "eng@example.com")
    row, token = accounts.create_token(db_session, user, "laptop")
    assert token.startswith("wsk_") and len(token) > 40
    assert row.token_hash == accounts.hash_token(token) and len(row.token_hash) == 64
    assert token not in {t.token_hash for t in db_session.scalars(select(ApiToken))}
    assert accounts.user_for_token(db_session, token) == user
    assert row.last_used_at is not None


def test_revoked_expired_unknown_and_disabled_tokens_are_refused(db_session):
    user = make_user(db_session, "eng@example.com")
    revoked, revoked_token = accounts.create_token(db_session, user, "old")
    accounts.revoke_token(db_session, user, revoked.id)
    expiring, expiring_token = accounts.create_token(db_session, user, "short", expires_in_days=1)
    expiring.expires_at = utcnow() - dt.timedelta(seconds=1)
    db_session.commit()
    with pytest.raises(Unauthorized, match="revoked"):
        accounts.user_for_token(db_session, revoked_token)
    with pytest.raises(Unauthorized, match="expired"):
        accounts.user_for_token(db_session, expiring_token)
    with pytest.raises(Unauthorized):
        accounts.user_for_token(db_session, "wsk_" + "x" * 43)
    _, good = accounts.create_token(db_session, user, "good")
    user.is_active = False
    db_session.commit()
    with pytest.raises(Unauthorized, match="disabled"):
        accounts.user_for_token(db_session, good)


def test_token_names_and_lifetimes_are_checked(db_session):
    user = make_user(db_session, "eng@example.com")
    with pytest.raises(Invalid) as info:
        accounts.create_token(db_session, user, "../../x")
    assert info.value.field == "name"
    with pytest.raises(Invalid) as info:
        accounts.create_token(db_session, user, "ok", expires_in_days=0)
    assert info.value.field == "expires_in_days"


def test_only_the_owner_or_an_admin_revokes_a_token(db_session):
    owner = make_user(db_session, "eng@example.com")
    other = make_user(db_session, "other@example.com")
    boss = make_user(db_session, "boss@example.com", admin=True)
    row, _ = accounts.create_token(db_session, owner, "laptop")
    with pytest.raises(NotFound):
        accounts.revoke_token(db_session, other, row.id)
    assert accounts.revoke_token(db_session, boss, row.id).revoked


def test_a_new_password_ends_browser_sessions(db_session):
    user = make_user(db_session, "eng@example.com")
    fingerprint = accounts.session_fingerprint(user)
    assert accounts.user_for_session(db_session, user.id, fingerprint) == user
    accounts.set_password(db_session, user, "a brand new password")
    assert accounts.user_for_session(db_session, user.id, fingerprint) is None
    assert accounts.user_for_session(db_session, user.id, accounts.session_fingerprint(user)) == user
    assert accounts.user_for_session(db_session, "1", fingerprint) is None
    assert db_session.get(User, user.id).password_hash != fingerprint
