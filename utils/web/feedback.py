"""Tell the user how a page's action went (a flash message): a service call's outcome, a form's errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import flash
from flask_wtf import FlaskForm

from utils.exceptions import ArbionError, NotFoundError

Result = TypeVar("Result")
# For routes naming an object by id: another user's object (or none) is a 404 page, as in the API.
NOT_FOUND: tuple[type[ArbionError], ...] = (NotFoundError,)


def attempt(
    action: Callable[[], Result], success: str = "", *, let_through: tuple[type[ArbionError], ...] = ()
) -> Result | None:
    """Call ``action``; flash its error in words (and return None) or flash ``success``.

    Errors of the ``let_through`` types are raised for the error handler instead (a 404 page).
    """
    try:
        result = action()
    except let_through:
        raise
    except ArbionError as exc:
        flash(exc.message, "error")
        return None
    if success:
        flash(success, "info")
    return result


def flash_errors(form: FlaskForm) -> None:
    """Flash every validation message of ``form`` in one line."""
    flash(" ".join(error for errors in form.errors.values() for error in errors), "error")
