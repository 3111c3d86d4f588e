"""Builders shared by the service and API tests: users, a valid case, a custom material,
a bearer-token test client and row counts."""

from __future__ import annotations

import copy
import functools
from typing import Any

from flask import Flask
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from portal.extensions import db
from portal.models import (ApiToken, Artifact, Comparison, ComparisonResult, GeometryVersion, Material, Metric,
                           OptimizationStudy, Project, Run, SimulationCase, User, Workflow)
from portal.services import accounts

PASSWORD = "correct horse battery"
ALL_MODELS = (User, ApiToken, Material, Project, GeometryVersion, SimulationCase, Comparison,
              OptimizationStudy, Workflow, Run, Artifact, Metric, ComparisonResult)

THERMAL_SPEC: dict[str, Any] = {
    "analysis": "thermal_steady",
    "geometry": {"kind": "cylinder", "length_m": 0.1, "diameter_m": 0.04},
    "materials": {"horn": "ti6al4v"},
    "boundary_conditions": [{"boundary": "input_face", "type": "temperature", "value": 300.0},
                            {"boundary": "output_face", "type": "heat_flux", "value": 5000.0}],
}

#: Ti-6Al-4V's numbers, as a custom material would give them (SI units)
CUSTOM_PROPERTIES: dict[str, float] = {
    "density_kg_m3": 4430.0, "youngs_modulus_Pa": 113.8e9, "poisson_ratio": 0.342, "conductivity_W_mK": 6.7,
    "specific_heat_J_kgK": 526.0, "expansion_1_K": 8.6e-6, "yield_strength_Pa": 880e6,
    "fatigue_strength_Pa": 510e6, "fatigue_cycles": 1e9, "loss_factor": 5e-5, "solidus_K": 1877.15,
}


def thermal_spec(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(THERMAL_SPEC)
    spec.update(changes)
    return spec


@functools.cache
def password_hash() -> str:
    """One scrypt hash of PASSWORD for every test user (hashing costs ~0.15 s)."""
    return generate_password_hash(PASSWORD)


def make_user(session, email: str, *, admin: bool = False) -> User:
    user = User(email=email, password_hash=password_hash(), is_admin=admin)
    session.add(user)
    session.commit()
    return user


def counts(session) -> dict[str, int]:
    """Rows per table, for 'nothing changed' checks."""
    session.expire_all()
    return {m.__tablename__: session.scalar(select(func.count()).select_from(m)) for m in ALL_MODELS}


class ApiClient:
    """A Flask test client speaking JSON as one user, with a bearer token (or none)."""

    def __init__(self, app: Flask, token: str | None = None, user_id: int | None = None):
        self.app, self.token, self.user_id = app, token, user_id
        self.client = app.test_client()

    def request(self, method: str, url: str, **kwargs: Any):
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        return self.client.open(url, method=method, headers=headers, **kwargs)

    def get(self, url: str, **kw: Any):
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any):
        return self.request("POST", url, **kw)

    def patch(self, url: str, **kw: Any):
        return self.request("PATCH", url, **kw)

    def put(self, url: str, **kw: Any):
        return self.request("PUT", url, **kw)

    def delete(self, url: str, **kw: Any):
        return self.request("DELETE", url, **kw)


def api_client(app: Flask, email: str, *, admin: bool = False) -> ApiClient:
    """A new user of `app` and a client holding a bearer token of theirs."""
    with app.app_context():
        user = make_user(db.session, email, admin=admin)
        _, token = accounts.create_token(db.session, user, "tests")
        return ApiClient(app, token, user.id)


def table_counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        try:
            return counts(db.session)
        finally:
            db.session.remove()


def error_of(response) -> dict[str, Any]:
    """The error of an envelope answer (asserting the envelope's shape)."""
    body = response.get_json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert {"code", "message", "field"} <= set(body["error"]), body
    assert body["error"]["message"], body
    return body["error"]
