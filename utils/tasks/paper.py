"""Paper broker tasks: background matching of resting orders."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from utils.services import paper_trading


@shared_task(name="paper.match_working_orders", ignore_result=True)
def match_working_orders() -> dict[str, int]:
    """Give every paper account with working orders one matching pass; return the counts."""
    return asdict(paper_trading.match_working_orders())
