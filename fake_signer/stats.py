"""Request counters of a fake signer, as `GET /_stats` reports them.

Outcomes counted per endpoint: `ok`, `bad_request` (input refused with a 4xx, or with the Idemix
server's 500 for an app's proofs of U that fail), `rejected`
(capacity full, 429), `error` (simulated random 500), `key_expired` (500: the certificate to sign
with has ended), `cancelled` (client went away first, even mid-body) and `fault:<kind>` (an
injected fault was applied and decided the answer).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fake_signer.behaviour import CapacityGate


class Stats:
    """Totals by endpoint and outcome; live in-flight figures come from the capacity gate."""

    def __init__(self, gate: CapacityGate) -> None:
        """Start with empty totals."""
        self._gate = gate
        self._totals: dict[str, Counter[str]] = {}

    def count(self, endpoint: str, outcome: str) -> None:
        """Record one finished request."""
        self._totals.setdefault(endpoint, Counter())[outcome] += 1

    def reset(self) -> None:
        """Zero the totals and restart peak tracking (in-flight and queued stay: they are live)."""
        self._totals.clear()
        self._gate.reset_peak()

    def snapshot(self) -> dict[str, Any]:
        """The `GET /_stats` document."""
        return {
            "inFlight": self._gate.in_flight,
            "peakInFlight": self._gate.peak,
            "queued": self._gate.queued,
            "totals": {name: dict(counter) for name, counter in sorted(self._totals.items())},
        }
