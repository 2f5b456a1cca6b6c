"""Broker connection upkeep: Schwab logins kept alive, expired ones marked for reconnecting."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from utils.services import schwab_logins


@shared_task(name="connections.keep_schwab_logins_alive")
def keep_schwab_logins_alive() -> dict[str, int]:
    """Refresh access tokens that expire soon; flag logins past their 7 days. Returns the counts."""
    return asdict(schwab_logins.keep_logins_alive())
