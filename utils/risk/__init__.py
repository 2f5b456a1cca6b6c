"""The risk layer: pure code, snapshots in and decisions out (no database, no network, no Flask).

- ``inputs``: the frozen dataclasses a check reads (limits, the order intent, the account snapshot);
- ``rules``: one small class per rule;
- ``engine``: ``RiskEngine.check`` runs the rules fail-closed and returns a ``RiskDecision``;
- ``stops``: evaluation of one open position's stop-loss, take-profit and trailing stop.

utils/services/risk.py builds the inputs from the database and records the outcome.
"""
