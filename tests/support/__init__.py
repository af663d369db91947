"""Helpers shared by tests: builders of keys, certificates, credentials; fake-signer processes."""
