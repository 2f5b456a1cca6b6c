"""Broker connection upkeep: Schwab logins kept alive, expired ones marked, broker APIs checked hourly."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from utils.services import platform_status, schwab_logins


@shared_task(name="connections.keep_schwab_logins_alive")
def keep_schwab_logins_alive() -> dict[str, int]:
    """Refresh access tokens that expire soon; flag logins past their 7 days. Returns the counts."""
    return asdict(schwab_logins.keep_logins_alive())


@shared_task(name="connections.check_broker_apis")
def check_broker_apis() -> dict[str, int]:
    """Call every connection's broker once; keep the outcome per provider for the admin status page.
    Returns the healthy connection count per provider."""
    return {status.provider: status.healthy for status in platform_status.check_broker_apis()}
