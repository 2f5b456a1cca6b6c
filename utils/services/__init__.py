"""Use cases: the only code that calls brokers and commits."""
