"""Helpers shared by tests (builders of keys, certificates and credentials)."""
