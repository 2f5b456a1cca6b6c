"""Row locks that hold on every backend we run on, and conditional-update claims.

PostgreSQL locks the selected rows with SELECT ... FOR UPDATE. SQLite ignores FOR UPDATE, so there
a no-op UPDATE of the same rows runs first: it takes the database's write lock for the rest of the
transaction, which serialises writers (others wait up to the connection timeout) the way the row
lock does on PostgreSQL. Either way the rows are re-read, so the session never works from a copy
loaded before the lock was taken.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from sqlalchemy.engine import CursorResult

from utils.extensions import db

Model = TypeVar("Model")


def locked_one(model: type[Model], *criteria: Any, key_share: bool = False) -> Model | None:
    """The one row of ``model`` matching ``criteria``, locked until the transaction ends.

    ``key_share``: PostgreSQL's FOR NO KEY UPDATE, which still lets other transactions insert rows
    that reference this one (their foreign-key check takes a KEY SHARE lock): a lock taken only to
    serialise callers then never waits on, nor deadlocks with, unrelated inserts.
    """
    if db.session.get_bind().dialect.name == "sqlite":
        table = model.__table__  # type: ignore[attr-defined]
        key = table.primary_key.columns.values()[0]
        db.session.execute(db.update(table).where(*criteria).values({key.name: key}))
    locking = db.select(model).where(*criteria).with_for_update(key_share=key_share)
    statement = locking.execution_options(populate_existing=True)
    return db.session.scalar(statement)


def claimed(statement: Any) -> bool:
    """Run a conditional UPDATE ("... WHERE status = expected"); True when it changed exactly one
    row, i.e. this caller won the race. The session's copies are not touched: refresh them."""
    result = cast(CursorResult[Any], db.session.execute(statement.execution_options(synchronize_session=False)))
    return result.rowcount == 1
