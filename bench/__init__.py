"""Benchmarks: ``python -m bench.<name>``; each prints a table of ratios against a ceiling and a baseline."""
