"""Omni's benchmarks: ``make bench`` runs ``bench/run.py`` (see docs/benchmarks.md)."""
