"""Battery sizes: the fast version runs in CI (`make test`), the long one in `make soak` (ARBION_SOAK=1)."""

from __future__ import annotations

import os

SOAK = os.environ.get("ARBION_SOAK") == "1"


def scaled(ci: int, soak: int) -> int:
    """``soak`` under `make soak`, ``ci`` otherwise."""
    return soak if SOAK else ci
