"""Benchmarks of minihaiku against raw JAX and peers (run: python -m benchmarks.run)."""
