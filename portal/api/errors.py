"""The one JSON error envelope of /api/v1, and the map from errors to status codes.

Every error answer under /api/ has the body::

    {"error": {"code": "not_found", "message": "project 7 not found", "field": null}}

`field` names the input at fault ("name", "spec.boundary_conditions[2].value", "page");
validation errors add "details": [{"field", "message"}, …] with every problem found.

    NotFound 404   Conflict 409   Invalid 422   Unauthorized 401   Forbidden 403
    Unavailable 503   malformed JSON 400   wrong Content-Type 415   body too large 413
    unknown URL 404   wrong method 405   anything else 500 (logged, no details leak)
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from pydantic import BaseModel, Field, ValidationError
from werkzeug.exceptions import HTTPException, InternalServerError

from ..services.errors import (Conflict, DomainError, Forbidden, Invalid, NotFound, Unauthorized,
                               Unavailable)

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
STATUS = {NotFound: 404, Conflict: 409, Invalid: 422, Unauthorized: 401, Forbidden: 403, Unavailable: 503}
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
              415: "unsupported_media_type", 422: "invalid", 429: "too_many_requests",
              500: "internal_error", 503: "unavailable"}


class ErrorDetail(BaseModel):
    field: str | None = Field(description="the input the problem is about (dotted path), or null")
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine code: not_found, conflict, invalid, unauthorized, …")
    message: str = Field(description="what went wrong and what to do, for a person")
    field: str | None = Field(None, description="the input at fault, e.g. 'name' or 'spec.time.dt_s'")
    details: list[ErrorDetail] | None = Field(None, description="validation: every problem found")


class ErrorEnvelope(BaseModel):
    """The body of every 4xx/5xx answer of the API."""

    error: ErrorBody


#: the error answers every API operation may give (for the OpenAPI document)
ERROR_RESPONSES: dict[int, type[BaseModel]] = {
    400: ErrorEnvelope, 401: ErrorEnvelope, 403: ErrorEnvelope, 404: ErrorEnvelope,
    409: ErrorEnvelope, 413: ErrorEnvelope, 415: ErrorEnvelope, 422: ErrorEnvelope,
}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   details: list[tuple[str, str]] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details:
        body["details"] = [{"field": f or None, "message": m} for f, m in details]
    response = jsonify({"error": body})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="weldsim"'
    return response


def domain_error_response(exc: DomainError) -> Response:
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
    return error_response(status, exc.code, exc.message, exc.field, exc.details)


def _location(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _reason(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; /api/v1/openapi.json lists every field)"
    if err["type"] == "missing":
        return "required"
    return str(err["msg"]).removeprefix("Value error, ")


def validation_error_response(exc: ValidationError) -> Response:
    """flask-openapi3's validation_error_callback: pydantic errors in the envelope (422)."""
    problems = [(_location(e["loc"]), _reason(e)) for e in exc.errors()]
    if any(not f for f, _ in problems) and request.get_data(cache=True) == b"":
        return error_response(422, "invalid", "this request needs a JSON object as its body")
    return domain_error_response(Invalid.from_problems(problems))


def _http_error(exc: HTTPException) -> Response:
    if not request.path.startswith(API_PREFIX) or (exc.code or 500) < 400:
        return exc  # browser pages keep Flask's error pages; redirects stay redirects
    status = exc.code or 500
    message = exc.description or exc.name
    if status == 413:
        message = "the request body is too large (limit: {} bytes)".format(
            request.max_content_length or "none")
    elif status == 404:
        message = f"no API endpoint {request.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.path} (allowed: " \
                  f"{', '.join(sorted(exc.valid_methods or []))})"
    return error_response(status, HTTP_CODES.get(status, "error"), message)


def _domain_error(exc: DomainError) -> Response:
    return domain_error_response(exc)


def _unexpected(exc: Exception) -> Response | HTTPException:
    log.exception("unhandled error in %s %s", request.method, request.path)
    if not request.path.startswith(API_PREFIX):
        return InternalServerError(original_exception=exc)
    return error_response(500, "internal_error", "internal error: the portal's log has the details")


def init_app(app: Flask) -> None:
    app.register_error_handler(DomainError, _domain_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
