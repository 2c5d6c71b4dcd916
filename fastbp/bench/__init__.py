"""Benchmark support: the workloads, the plain-NumPy baseline and the ``fastbp bench`` CLI.

Imported only by benchmarks and the CLI, never by ``import fastbp``.
"""
