"""CPU time spent by the benchmarked processes: process groups (gunicorn, a Celery worker), the
PostgreSQL backends serving the bench database, and this process (the clients).

CPU seconds per order do not depend on how busy the shared machine is the way wall-clock rates do,
so they say what one order costs and how many orders a second two cores could carry at best.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import sqlalchemy as sa

TICKS = os.sysconf("SC_CLK_TCK")


def group_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes in process group ``pgid``."""
    total = 0
    for entry in Path("/proc").iterdir():
        fields = _stat_fields(entry) if entry.name.isdigit() else None
        if fields is not None and int(fields[2]) == pgid:  # fields after "(comm)": state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def database_seconds(engine: sa.Engine) -> float:
    """CPU seconds of the PostgreSQL backends connected to the engine's database (this one excluded)."""
    with engine.connect() as connection:
        pids = connection.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        ).scalars()
        fields = [_stat_fields(Path(f"/proc/{pid}")) for pid in pids]
    return sum(int(f[11]) + int(f[12]) for f in fields if f is not None) / TICKS


def own_seconds() -> float:
    """CPU seconds of this process so far (its threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stat_fields(entry: Path) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None when the process is gone."""
    try:
        return (entry / "stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return None
