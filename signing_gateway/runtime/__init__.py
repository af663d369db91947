"""Event-loop fairness: how much CPU work the gateway lets onto its loop at once."""
