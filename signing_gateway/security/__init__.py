"""Security: caller authentication, request limits, the audit trail."""
