"""ArbionTrader application package: adapters, services, domain and infrastructure leaves."""
