"""Benchmarks (``make bench``); each writes its results into docs/performance.md."""
