"""Benchmarks (not run by the tests)."""
