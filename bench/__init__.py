"""Benchmarks: each script prints a table with its reference measured in the same run (see README.md)."""
