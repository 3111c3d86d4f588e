"""Pages of query results: `paginate(session, stmt, page, per_page)` → Page.

Pages count from 1; `per_page` is capped at MAX_PER_PAGE. The statement must be ordered
(a page of an unordered query is not stable between requests).

Example::

    page = paginate(session, select(Project).order_by(Project.id), page=2, per_page=20)
    page.items, page.total
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from .errors import Invalid

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    page: int
    per_page: int
    total: int


def paginate(session: Session, stmt: Select[Any], page: int = 1, per_page: int = DEFAULT_PER_PAGE) -> Page:
    """One page of `stmt`'s scalars and the total count of its rows."""
    if page < 1:
        raise Invalid("must be 1 or more", field="page")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise Invalid(f"must lie between 1 and {MAX_PER_PAGE}", field="per_page")
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    items = list(session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)))
    return Page(items=items, page=page, per_page=per_page, total=int(total or 0))
