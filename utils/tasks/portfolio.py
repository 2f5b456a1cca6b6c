"""Portfolio history: the periodic equity snapshots behind the dashboard's equity curve."""

from __future__ import annotations

from celery import shared_task

from utils.services import equity_history


@shared_task(name="portfolio.snapshot_equity")
def snapshot_equity() -> dict[str, int]:
    """Snapshot every connected account's balance and purge expired snapshots; counts of each."""
    run = equity_history.record_snapshots()
    return {"written": run.written, "unavailable": run.unavailable, "purged": run.purged}
