"""Benchmarks of the scale targets (issue #6): run with `make bench`; results land in BENCHMARKS.md."""
