"""A signer's silence: how long the gateway has waited on it since its last answer.

Waiting is time with an attempt on the wire to the signer that ended unanswered (cut by a
deadline, timed out, failed without an answer) and was not cancelled: a cancelled attempt,
its caller gone, a failing sibling part or shutdown, was stopped before the signer could
answer, so it says nothing about the signer. Each instant counts once, however many
attempts were on the wire then (the union of their spans), and a quiet spell, with nothing
on the wire, is no waiting. `SignerPolicy.signer_silent` judges a deadline's cut by it
(docs/resilience.md).
"""

from __future__ import annotations

from collections import deque


class Silence:
    """The waiting on one signer since it last answered (module doc); event-loop time."""

    __slots__ = ("_forget_after", "_since", "_spans", "_waited")

    def __init__(self, attempt_timeout: float) -> None:
        """Track attempts that last `attempt_timeout` at most."""
        #: How long a counted span is kept for the attempts that may still overlap it: no
        #: attempt is on the wire longer than an attempt timeout; twice that, for a late loop.
        self._forget_after = 2 * attempt_timeout
        #: Waiting counted since `_since`.
        self._waited = 0.0
        #: The signer's last answer (or breaker transition): nothing before it counts.
        self._since = 0.0
        #: The recent spans counted, disjoint and in time order, as (start, end).
        self._spans: deque[tuple[float, float]] = deque()

    def waited(self, now: float, sent_at: float) -> float:
        """The waiting so far, with an attempt sent at `sent_at` still on the wire at `now`."""
        start = max(sent_at, self._since)
        return self._waited + (self._uncovered(start, now) if now > start else 0.0)

    def add(self, sent_at: float, ended_at: float) -> None:
        """An attempt on the wire from `sent_at` to `ended_at` went unanswered: it waited.

        Attempts end in time order: every span counted so far ends by `ended_at`.
        """
        start = max(sent_at, self._since)
        if ended_at <= start:
            return
        self._waited += self._uncovered(start, ended_at)
        spans = self._spans
        while spans and spans[-1][1] >= start:  # overlapping it: merged into one
            start = min(start, spans.pop()[0])
        spans.append((start, ended_at))
        while spans[0][1] < ended_at - self._forget_after:
            spans.popleft()

    def ends(self, now: float) -> None:
        """The signer answered (or the breaker moved) at `now`: the waiting starts afresh."""
        self._waited = 0.0
        self._since = now
        self._spans.clear()

    def _uncovered(self, start: float, end: float) -> float:
        """The part of `start`..`end` no span counted yet covers."""
        uncovered = end - start
        for span_start, span_end in reversed(self._spans):
            if span_end <= start:
                break
            uncovered -= min(span_end, end) - max(span_start, start)
        return max(uncovered, 0.0)
