"""Resilience around the signers: bulkheads, retries with a budget, circuit breakers, draining.

The pieces are small and independent (each testable with an injectable clock); `policy.py`
composes them into one `SignerPolicy` per signer, and `shutdown.py` drains the server on
SIGTERM. See docs/resilience.md for the decisions behind them.
"""
