"""Notification delivery: new notifications POSTed to the users' webhooks."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from utils.services import webhooks


@shared_task(name="notifications.deliver_webhooks", ignore_result=True)
def deliver_webhooks() -> dict[str, int]:
    """One delivery pass; returns how many were sent and how many failed."""
    return asdict(webhooks.deliver_pending())
