"""Issuance use cases: validate, call signers concurrently, verify, answer."""
