"""The app-wide input filter and the id converter: what no view can store or look up is refused
before any view sees it.

PostgreSQL refuses a NUL character in text (and a JSON string may carry lone surrogates that
cannot be encoded at all), Python's JSON parser recurses once per nesting level, and every id
column is a PostgreSQL ``integer``. So text holding those characters, JSON nested deeper than
MAX_JSON_DEPTH and ids beyond INTEGER_MAX are refused here, with the JSON envelope on the API
and a readable page elsewhere, instead of failing as a 500 deep inside a service.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from typing import Any

from flask import Flask, request
from werkzeug.routing import IntegerConverter, Map, ValidationError

from models import INTEGER_MAX
from utils.exceptions import InvalidInputError

MAX_JSON_DEPTH = 32
UNSAFE_TEXT_MESSAGE = "Text may not contain a NUL or other control character."
# C0 controls except tab, newline and carriage return (NUL above all), and lone surrogates.
_UNSAFE_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
# Escapes, quotes and brackets: all a JSON nesting count needs to look at, found in linear time.
_JSON_TOKEN = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` for every route: digits the id columns can hold, else no match (404)."""

    def __init__(
        self, map: Map, fixed_digits: int = 0, min: int | None = None, max: int | None = None, signed: bool = False
    ) -> None:
        bounded = INTEGER_MAX if max is None else builtins.min(max, INTEGER_MAX)
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=bounded, signed=signed)

    def to_python(self, value: str) -> Any:
        """Refuse more digits than INTEGER_MAX has before converting (int() of huge text is slow)."""
        if len(value) > len(str(INTEGER_MAX)):
            raise ValidationError()
        return super().to_python(value)


def holds_unsafe_text(value: Any) -> bool:
    """True when a string, or any key or item of a JSON value, holds an unsafe character."""
    if isinstance(value, str):
        return _UNSAFE_CHARACTER.search(value) is not None
    if isinstance(value, Mapping):
        return any(holds_unsafe_text(key) or holds_unsafe_text(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(holds_unsafe_text(item) for item in value)
    return False


def named_values(data: Any) -> list[tuple[str, Any]]:
    """(name, value) pairs of a JSON object, a form or a query string (every value of a repeated
    name); any other JSON value as one ``_schema`` pair."""
    source = getattr(data, "data", data)  # webargs wraps query strings in a MultiDictProxy
    if hasattr(source, "lists"):
        return [(str(name), values) for name, values in source.lists()]
    return (
        [(str(name), value) for name, value in source.items()] if isinstance(source, Mapping) else [("_schema", source)]
    )


def unsafe_fields(data: Any) -> list[str]:
    """The names (sorted, once each) of ``data`` whose name or value holds unsafe text."""
    pairs = named_values(data)
    return sorted({name for name, value in pairs if holds_unsafe_text(name) or holds_unsafe_text(value)})


def refuse_unsafe_text(location: str, data: Any) -> None:
    """Raise a 422 naming every field of ``location`` whose text holds an unsafe character."""
    fields = unsafe_fields(data)
    if fields:
        raise InvalidInputError(
            "Some fields contain characters that cannot be accepted (NUL or control characters).",
            details={"location": location, "fields": {name: [UNSAFE_TEXT_MESSAGE] for name in fields}},
        )


def json_deeper_than(text: str, limit: int) -> bool:
    """True when the JSON ``text`` nests arrays and objects more than ``limit`` levels deep."""
    depth, in_string = 0, False
    for token in _JSON_TOKEN.finditer(text):
        char = token.group()
        if char == '"':
            in_string = not in_string
        elif in_string or len(char) == 2:
            continue
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def refuse_unsafe_input() -> None:
    """before_request: refuse unsafe text in the query string, the form or a JSON body, and JSON
    nested too deeply (422: the envelope on the API, the error page elsewhere)."""
    refuse_unsafe_text("query", request.args)
    refuse_unsafe_text("form", request.form)
    if request.is_json:
        if json_deeper_than(request.get_data(as_text=True), MAX_JSON_DEPTH):
            raise InvalidInputError(
                f"The JSON body is nested too deeply (at most {MAX_JSON_DEPTH} levels).",
                details={"location": "json"},
            )
        refuse_unsafe_text("json", request.get_json(silent=True))


def init_inputs(app: Flask) -> None:
    """Bound every ``<int:...>`` of the URL map and filter every request's input (call before
    any blueprint is registered, so each rule picks up the converter)."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.before_request(refuse_unsafe_input)
