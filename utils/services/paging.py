"""Listings in pages: one page of a statement's rows and how many rows match in all.

Two queries whatever the page (a count, then the page's rows), so a long history costs no more
to show than a short one. The orders page and the REST API's listings share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select

from utils.extensions import db

Row = TypeVar("Row")


@dataclass(frozen=True)
class Page(Generic[Row]):
    """One page of a listing (``page`` counts from 1) with the total number of matching rows."""

    items: list[Row]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages the listing has (at least 1)."""
        return page_count(self.total, self.per_page)

    @property
    def has_previous(self) -> bool:
        """Whether there is a page before this one."""
        return self.page > 1

    @property
    def has_next(self) -> bool:
        """Whether there is a page after this one."""
        return self.page < self.pages


def paginate(statement: Select[tuple[Row]], page: int, per_page: int, *, clamp: bool = False) -> Page[Row]:
    """Page ``page`` of the ordered ``statement``, ``per_page`` rows a page. With ``clamp``, a page
    before the first shows the first and one past the end shows the last."""
    counted = db.select(db.func.count()).select_from(statement.order_by(None).subquery())
    total = int(db.session.scalar(counted) or 0)
    if clamp:
        page = min(max(page, 1), page_count(total, per_page))
    rows = db.session.scalars(statement.offset((page - 1) * per_page).limit(per_page))
    return Page(list(rows), page, per_page, total)


def page_count(total: int, per_page: int) -> int:
    """How many pages ``total`` rows fill (at least 1, so an empty listing has one empty page)."""
    return max(1, math.ceil(total / per_page))
