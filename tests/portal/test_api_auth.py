"""Authentication over HTTP: JSON login with a session cookie and CSRF header, the /login
form, bearer tokens, and 401 for everything without credentials."""

from __future__ import annotations

import re

import pytest

from portal.extensions import db
from portal.services import accounts

from .helpers import PASSWORD, error_of, make_user, table_counts


@pytest.fixture
def browser(web_app):
    """A test client (cookies kept) and a user to log in as."""
    with web_app.app_context():
        make_user(db.session, "eng@example.com")
    return web_app.test_client()


def login(client, email="eng@example.com", password=PASSWORD):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def test_json_login_opens_a_session_and_hands_out_the_csrf_token(browser):
    response = login(browser)
    assert response.status_code == 200
    body = response.get_json()
    assert body["user"]["email"] == "eng@example.com" and body["auth"] == "session"
    cookie = browser.get_cookie("weldsim_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    me = browser.get("/api/v1/auth/me").get_json()
    assert me["user"]["email"] == "eng@example.com" and me["csrf_token"] == body["csrf_token"]


def test_cookie_requests_that_change_state_need_the_csrf_header(browser, web_app):
    token = login(browser).get_json()["csrf_token"]
    project = {"name": "Tab weld", "application_type": "li_battery_tab"}
    before = table_counts(web_app)
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        response = browser.post("/api/v1/projects", json=project, headers=headers)
        assert response.status_code == 403 and "X-CSRF-Token" in error_of(response)["message"]
    assert table_counts(web_app) == before
    assert browser.get("/api/v1/projects").status_code == 200  # reading needs no token
    assert browser.post("/api/v1/projects", json=project, headers={"X-CSRF-Token": token}).status_code == 201


def test_logout_ends_the_session(browser):
    token = login(browser).get_json()["csrf_token"]
    assert browser.post("/api/v1/auth/logout").status_code == 403  # logging out is a change too
    assert browser.post("/api/v1/auth/logout", headers={"X-CSRF-Token": token}).status_code == 204
    assert browser.get("/api/v1/auth/me").status_code == 401


def test_wrong_password_is_401_and_opens_no_session(browser):
    response = login(browser, password="not the password")
    assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"
    assert login(browser, email="nobody@example.com").status_code == 401
    assert browser.get("/api/v1/auth/me").status_code == 401


def test_a_password_change_ends_existing_sessions(browser, web_app):
    login(browser)
    with web_app.app_context():
        accounts.set_password(db.session, accounts.get_user_by_email(db.session, "eng@example.com"), "brand new pw!")
    response = browser.get("/api/v1/auth/me")
    assert response.status_code == 401 and "log in again" in error_of(response)["message"]


@pytest.mark.parametrize("url", ["/api/v1/projects", "/api/v1/projects/1", "/api/v1/projects/1/cases",
                                 "/api/v1/materials", "/api/v1/materials/custom/1", "/api/v1/auth/me",
                                 "/api/v1/auth/tokens", "/api/v1/no-such-thing"])
def test_no_credentials_is_401_everywhere(web_app, url):
    client = web_app.test_client()
    for method in ("GET", "POST", "PATCH", "DELETE"):
        response = client.open(url, method=method, json={})
        assert response.status_code == 401, (method, url)
        assert error_of(response)["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic ZW5nOnB3", "Bearer", "Bearer wsk_not-a-token", "Token abc"])
def test_bad_authorization_headers_are_401_even_with_a_session(browser, header):
    login(browser)
    response = browser.get("/api/v1/projects", headers={"Authorization": header})
    assert response.status_code == 401


def test_bearer_tokens_made_over_the_api(alice, web_app):
    response = alice.post("/api/v1/auth/tokens", json={"name": "laptop", "expires_in_days": 30})
    assert response.status_code == 201
    made = response.get_json()
    assert made["token"].startswith("wsk_") and made["expires_at"] is not None
    listed = alice.get("/api/v1/auth/tokens").get_json()["items"]
    assert {t["name"] for t in listed} == {"tests", "laptop"} and all("token" not in t for t in listed)
    client = web_app.test_client()
    auth = {"Authorization": f"Bearer {made['token']}"}
    me = client.get("/api/v1/auth/me", headers=auth).get_json()
    assert me["auth"] == "token" and me["csrf_token"] is None
    # bearer requests need no CSRF header
    assert client.post("/api/v1/projects", headers=auth,
                       json={"name": "Horn", "application_type": "horn_design"}).status_code == 201
    assert alice.delete(f"/api/v1/auth/tokens/{made['id']}").status_code == 204
    assert client.get("/api/v1/auth/me", headers=auth).status_code == 401


def test_another_users_token_cannot_be_revoked(alice, bob):
    made = alice.post("/api/v1/auth/tokens", json={"name": "laptop"}).get_json()
    response = bob.delete(f"/api/v1/auth/tokens/{made['id']}")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_the_login_form_with_csrf_and_a_safe_next(browser):
    page = browser.get("/login?next=/projects/3")
    assert page.status_code == 200 and b'name="password"' in page.data
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    form = {"email": "eng@example.com", "password": PASSWORD, "next": "/projects/3"}
    assert browser.post("/login", data=form).status_code == 400  # no CSRF token
    wrong = browser.post("/login", data={**form, "csrf_token": csrf, "password": "nope"})
    assert wrong.status_code == 401 and b"wrong e-mail address or password" in wrong.data
    ok = browser.post("/login", data={**form, "csrf_token": csrf})
    assert ok.status_code == 302 and ok.headers["Location"] == "/projects/3"
    assert browser.get("/api/v1/auth/me").get_json()["user"]["email"] == "eng@example.com"


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "evil"])
def test_the_login_form_never_redirects_off_site(browser, target):
    page = browser.get("/login")
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    response = browser.post("/login", data={"email": "eng@example.com", "password": PASSWORD,
                                            "csrf_token": csrf, "next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_unknown_endpoints_and_methods_answer_in_the_envelope(alice):
    response = alice.get("/api/v1/no-such-thing")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    response = alice.put("/api/v1/projects", json={})
    assert response.status_code == 405 and "allowed: GET, HEAD, OPTIONS, POST" in error_of(response)["message"]
