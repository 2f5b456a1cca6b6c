"""Broker clients behind one interface (base.Broker): paper, Schwab, Coinbase."""
