"""Load benchmarks of the gateway: `python -m bench.run` (see docs/benchmarks.md)."""
