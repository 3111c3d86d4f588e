"""The JSON API under /api/v1: one blueprint per resource, one error envelope.

    auth        /api/v1/auth/login|logout|me|tokens
    projects    /api/v1/projects[/<id>]
    cases       /api/v1/projects/<id>/cases[/<id>]
    geometries  /api/v1/projects/<id>/geometries[/uploads|/<id>[/mesh|/preview|/files/<kind>]]
    materials   /api/v1/materials, /builtin[/<id>], /custom[/<id>]
    workflows   /api/v1/projects/<id>/workflows[/<id>[/execute|/cancel]], /validate
    fields      /api/v1/runs/<id>/results/fields, /results/field/<name> (binary, for viewers)
    comparisons /api/v1/projects/<id>/comparisons, /api/v1/comparisons[/<id>[/refresh]]
    openapi     /api/v1/openapi.json — generated from the request and response models

`init_app` registers them with the authentication hook (portal.api.auth) and the error
handlers (portal.api.errors). Another resource joins by making its blueprint with
`common.api_blueprint` and registering it here: it is then authenticated, its errors
take the envelope, and it appears in the OpenAPI document.
"""

from __future__ import annotations

from flask_openapi3 import OpenAPI

from . import auth, cases, comparisons, errors, fields, geometries, materials, openapi, projects, workflows

BLUEPRINTS = (auth.login_bp, auth.bp, projects.bp, cases.bp, materials.bp, fields.bp, comparisons.bp,
              workflows.bp, geometries.bp)


def init_app(app: OpenAPI) -> None:
    errors.init_app(app)
    app.before_request(auth.authenticate_request)
    for blueprint in BLUEPRINTS:
        app.register_api(blueprint)
    openapi.init_app(app)
