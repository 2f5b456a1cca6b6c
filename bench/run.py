"""Run the benchmarks: ``python -m bench.run --full`` (the issue's sizes; rewrites BENCHMARKS.md) or
``--quick`` (small sizes, a few minutes; results in bench/results/quick/, BENCHMARKS.md untouched).

``--only NAME`` runs one benchmark (the module's name, e.g. monitor_cycle), then re-renders the
report from every result present.
"""

from __future__ import annotations

import argparse
import importlib
import time

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench import common, report


def main() -> None:
    """Parse the command line, run the chosen benchmarks, write the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--full", action="store_true", help="the issue's sizes; rewrites BENCHMARKS.md")
    mode.add_argument("--quick", action="store_true", help="small sizes; leaves BENCHMARKS.md alone")
    parser.add_argument("--only", choices=report.ORDER, action="append", help="run only these benchmarks")
    options = parser.parse_args()
    common.QUICK = options.quick
    ensure_database()
    for name in options.only or report.ORDER:
        started = time.monotonic()
        print(f"== {name} ...", flush=True)
        result = importlib.import_module(f"bench.{name}").run(options.quick)
        for target in result.get("targets", []):
            verdict = "met" if target["met"] else "MISSED"
            print(f"   {target['name']}: {target['measured']} (target {target['target']}) {verdict}")
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    if options.full:
        print(f"wrote {report.write()}")


def ensure_database() -> None:
    """Create the bench database when it does not exist yet (PostgreSQL, via its maintenance database)."""
    url = make_url(common.DATABASE_URL)
    engine = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
        ).first()
        if exists is None:
            connection.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
    engine.dispose()


if __name__ == "__main__":
    main()
