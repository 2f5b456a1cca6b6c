"""Forms several pages share."""

from __future__ import annotations

from flask_wtf import FlaskForm


class ActionForm(FlaskForm):
    """A bare form: its CSRF token proves the action came from our page."""
