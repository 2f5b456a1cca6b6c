"""The blueprint every /api/v1 resource is made of, and how its request validation fails."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import flask
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError
from webargs.flaskparser import FlaskParser

from utils.exceptions import InvalidInputError
from utils.extensions import csrf, limiter
from utils.web.api.auth import api_limit, authenticate, rate_limit_key
from utils.web.inputs import refuse_unsafe_text


class EnvelopeParser(FlaskParser):
    """Request validation errors become our 422 envelope, with the messages per field."""

    def handle_error(
        self,
        error: ValidationError,
        req: flask.Request,
        schema: Schema,
        *,
        error_status_code: int | None,
        error_headers: Any,
    ) -> NoReturn:
        """Raise InvalidInputError naming every bad field (``details.fields``) and where it was sent."""
        messages = error.normalized_messages()
        location, fields = next(iter(messages.items())) if len(messages) == 1 else ("", messages)
        raise InvalidInputError("Some fields are not valid.", details={"location": location, "fields": fields})

    def pre_load(self, location_data: Mapping[str, Any], *, schema: Schema, req: flask.Request, location: str) -> Any:
        """Refuse text holding a NUL or control character (422): PostgreSQL cannot store NUL. The
        app-wide filter already checked the query and the body; this covers headers too."""
        refuse_unsafe_text(location, location_data)
        return location_data


class ApiBlueprint(Blueprint):
    """A resource of /api/v1: authenticates every call itself, CSRF only for session calls, and
    counts every call against API_RATE_LIMIT. ``admin`` resources need the admin scope. ``tag``
    is the resource's name in the OpenAPI document and Swagger UI (the blueprint's name is not
    for readers)."""

    ARGUMENTS_PARSER = EnvelopeParser()
    authenticates_itself = True  # the app-wide login guard leaves these calls to us

    def __init__(self, *args: Any, tag: str, admin: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tag = tag
        self.before_request(lambda: authenticate(admin))
        csrf.exempt(self)
        limiter.shared_limit(api_limit, scope="api", key_func=rate_limit_key)(self)

    def route(self, rule: str, *, parameters: Any = None, tags: list[str] | None = None, **options: Any) -> Any:
        """A documented route, filed under this resource's tag unless given others."""
        return super().route(rule, parameters=parameters, tags=tags or [self.tag], **options)
