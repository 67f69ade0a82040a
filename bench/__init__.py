"""Benchmarks and the fake upstream they (and the multi-process tests) run against."""
