"""Logging, request correlation and runtime health signals."""
