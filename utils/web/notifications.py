"""The trader's notifications and where they are also sent (a signed webhook)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import URLField
from wtforms.validators import DataRequired, Length

from utils.services import notifications, webhooks
from utils.web.feedback import attempt, flash_errors
from utils.web.forms import ActionForm
from utils.web.safety import no_store

bp = Blueprint("notifications", __name__, url_prefix="/notifications")


class WebhookForm(FlaskForm):
    """The URL notifications are POSTed to."""

    url = URLField("Webhook URL (https)", validators=[DataRequired(), Length(max=500)])


@bp.get("/")
def index() -> ResponseReturnValue:
    """The newest notifications first, and the webhook settings."""
    return _page()


@bp.post("/read")
def mark_read() -> ResponseReturnValue:
    """Mark every notification read."""
    if ActionForm().validate_on_submit():
        notifications.mark_all_read(current_user.id)
    return redirect(url_for("notifications.index"))


@bp.post("/webhook")
@no_store
def set_webhook() -> ResponseReturnValue:
    """Save the webhook; its signing secret is shown on this answer only (never stored in clear)."""
    form = WebhookForm()
    if not form.validate_on_submit():
        flash_errors(form)
        return redirect(url_for("notifications.index"))
    secret = attempt(lambda: webhooks.set_webhook(current_user, form.url.data or ""), "Webhook saved.")
    if secret is None:
        return redirect(url_for("notifications.index"))
    return _page(new_secret=secret)


@bp.post("/webhook/clear")
def clear_webhook() -> ResponseReturnValue:
    """Stop sending notifications to the webhook."""
    if ActionForm().validate_on_submit():
        attempt(lambda: webhooks.clear_webhook(current_user), "Webhook removed.")
    return redirect(url_for("notifications.index"))


def _page(new_secret: str | None = None) -> ResponseReturnValue:
    return render_template(
        "notifications/index.html",
        rows=notifications.recent(current_user.id),
        webhook_form=WebhookForm(url=current_user.webhook_url),
        action_form=ActionForm(),
        new_secret=new_secret,
    )
