"""Domain errors of the services: what went wrong, in words a user can act on.

Each error has a stable machine `code`, a `message`, optionally the `field` of the input it
is about ("name", "spec.boundary_conditions[2].value") and, for validation, `details`:
one {"field", "message"} per problem. The HTTP status of each class is chosen in
portal.api.errors, not here: services know nothing of HTTP.

Example::

    raise Invalid("must not contain '/'", field="name")
"""

from __future__ import annotations

from collections.abc import Iterable

from weldsim_hpc.errors import WeldSimError


class DomainError(WeldSimError):
    """Base of the services' errors."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None,
                 details: Iterable[tuple[str, str]] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = [(f, m) for f, m in details] if details else []

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class NotFound(DomainError):
    """Absent, or not visible to the caller (the two are indistinguishable on purpose)."""

    code = "not_found"


class Conflict(DomainError):
    """The request clashes with the current state (a duplicate name, unfinished runs …)."""

    code = "conflict"


class Invalid(DomainError):
    """The input is malformed or breaks a rule; `field` names where."""

    code = "invalid"

    @classmethod
    def from_problems(cls, problems: list[tuple[str, str]], prefix: str = "") -> Invalid:
        """One error for many (field path, reason) pairs, paths prefixed by `prefix`."""
        full = [(_join(prefix, path), reason) for path, reason in problems]
        first_field, first_reason = full[0]
        more = f" (and {len(full) - 1} more problem{'s' if len(full) > 2 else ''})" if len(full) > 1 else ""
        return cls(first_reason + more, field=first_field or None, details=full)


class Unauthorized(DomainError):
    """No valid credentials: log in or send a bearer token."""

    code = "unauthorized"


class Forbidden(DomainError):
    """Authenticated, but this is not allowed (a missing CSRF token, a disabled account)."""

    code = "forbidden"


class Unavailable(DomainError):
    """A collaborator this request needs is not running (e.g. no run agent to cancel runs)."""

    code = "unavailable"


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"
