"""Benchmarks and evaluations, run from the checkout (`python bench/<name>.py`); not installed."""
