"""Benchmarks for SVD Studio: each module runs with ``python -m bench.<name>`` and prints a
markdown table (see BENCHMARKS.md)."""
