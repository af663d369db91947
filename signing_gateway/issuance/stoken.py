"""Single-use issuance session tokens ("stoken") with a time to live, bound to their caller.

The store is an interface: `InMemoryStokenStore` serves one process, and
`issuance/redis_stokens.py`'s `RedisStokenStore` every replica and worker sharing one Redis
(`session_store.kind`).

A session is taken before its `/issue` call, so two requests with one stoken can never both
reach the signer. It is put back only when that call certainly never reached the signer
(see `issuance/session.py`), with the expiry it had: a put-back never lengthens a session.

A session belongs to the caller that opened it (the token subject, `Caller.subject`; with
authentication disabled every caller is `anonymous`, so one caller). Only that caller can
take it: presented by another, it is neither handed out nor used up, so a stoken that leaked
(a log line, a proxy, another service holding `domestic:sign`) can neither be spent by
whoever found it nor burnt by them under its owner.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

#: What a shared store does for a session, as `gateway_session_store_failures_total` labels
#: its failures (`issuance/redis_stokens.py`).
StoreOperation = Literal["open", "take", "put_back"]
STORE_OPERATIONS: tuple[StoreOperation, ...] = ("open", "take", "put_back")


@dataclass(frozen=True, slots=True)
class IssuanceSession:
    """What the gateway remembers between prepare-issue and issue, and for whom."""

    prepare_issue_message: dict[str, Any]
    expires_at: float
    #: The subject of the caller that opened the session: the only one that may take it.
    owner: str


@dataclass(frozen=True, slots=True)
class NotOwner:
    """`take`'s answer for a live session opened by another caller: refused, left in the store.

    It names that session's owner for the gateway's own log (never for the caller's answer,
    which is the one an unknown stoken gets).
    """

    owner: str


class StokenStore(Protocol):
    """Where issuance sessions live between the two calls of domestic issuance."""

    async def open(self, prepare_issue_message: dict[str, Any], *, owner: str) -> str:
        """Remember a session of the caller `owner` (its subject) and return its new token."""
        ...

    async def take(self, stoken: str, *, owner: str) -> IssuanceSession | NotOwner | None:
        """Remove and return the live session for `stoken` if `owner` opened it.

        None if it is unknown, expired or used. A live session another caller opened is not
        removed: `NotOwner`, and its owner can still take it. A shared store keeps the owner
        with the session and compares it in the same atomic step that removes the session,
        never as a GETDEL followed by a check (which would consume another caller's session)
        nor as a GET, a check and a DEL (two requests of its owner could then both take it):
        the Redis store's is one Lua script, which Redis runs atomically.
        """
        ...

    async def put_back(self, stoken: str, session: IssuanceSession) -> float:
        """Make a session taken by `take` usable again, until its original `expires_at`.

        Only for a session whose use certainly never reached the signer, so its nonce is
        unspent. It goes back with its owner (the value holds it), so only its owner can take
        it again. A session already expired stays gone (0.0: the caller must start again),
        and a token that is live again (it never should be) is left as it is. A shared store
        writes the session back only where no key is, with the time it has left by
        `expires_at` (the Redis store: one script, `EXISTS`, then `HSET` and `PEXPIRE`), so
        that a put-back neither overwrites nor lengthens. It runs while the request is being
        cancelled, so it should be short and bounded.

        Returns:
            The seconds left before the session expires, 0.0 if it had (then it is not held).
        """
        ...


class InMemoryStokenStore:
    """A bounded, TTL-expiring, single-use token store for one process, bound to owners.

    Tokens are kept in insertion order, so expired ones are swept from the front in O(expired).
    When the store is full the oldest session is dropped: a flood of prepare-issue calls can
    cost old sessions, never the gateway's memory.

    The sweep also runs on a timer set for the oldest session's expiry (one timer at most), so
    an expired session leaves memory when it expires, not when the next session is opened.
    Swept only then, a burst of prepare-issue calls that were never followed by an issue stayed
    held for as long as no further one came: up to `max_sessions` of them (~0.8 KB each), for
    good if domestic issuance stopped. `close` cancels the timer.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure lifetime and size bound; `clock` is injectable for tests."""
        self._ttl = ttl_seconds
        self._max = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, IssuanceSession] = OrderedDict()
        #: The timer set for the oldest session's expiry, while a session is held.
        self._sweeper: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """Number of sessions held (live or not yet swept)."""
        return len(self._sessions)

    def _sweep(self, now: float) -> None:
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.expires_at > now:
                break
            self._sessions.popitem(last=False)

    def _make_room(self, now: float) -> None:
        self._sweep(now)
        while len(self._sessions) >= self._max:
            self._sessions.popitem(last=False)

    def _sweep_when_due(self, now: float) -> None:
        """Set the timer for the oldest session's expiry, unless one is set or none is held.

        Called once a session is added, after a sweep: the oldest then expires after `now`.
        A timer that finds its session taken meanwhile sets one for the next oldest.
        """
        if self._sweeper is not None or not self._sessions:
            return
        oldest = next(iter(self._sessions.values()))
        # In a context of its own: armed in the request that opened the session, the timer
        # would hold that request's context (its CPU permit, deadline, telemetry) for the
        # whole TTL, and pass it on to the next timer it sets.
        self._sweeper = asyncio.get_running_loop().call_later(
            max(0.0, oldest.expires_at - now), self._timer_rang, context=contextvars.Context()
        )

    def _timer_rang(self) -> None:
        self._sweeper = None
        now = self._clock()
        self._sweep(now)
        self._sweep_when_due(now)

    def close(self) -> None:
        """Cancel the sweep timer (the sessions are left as they are). At shutdown."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def open(self, prepare_issue_message: dict[str, Any], *, owner: str) -> str:
        """Remember a session of `owner` and return its new token (a random UUID)."""
        now = self._clock()
        self._make_room(now)
        token = str(uuid.uuid4())
        self._sessions[token] = IssuanceSession(prepare_issue_message, now + self._ttl, owner)
        self._sweep_when_due(now)
        return token

    async def take(self, stoken: str, *, owner: str) -> IssuanceSession | NotOwner | None:
        """Remove and return the session if it is live and `owner`'s; a second take gets None.

        Another caller's live session stays where it is (`NotOwner`); an expired one is
        dropped and answered None, whoever asks. No await between the look and the removal:
        nothing can take the session in between.
        """
        session = self._sessions.get(stoken)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            del self._sessions[stoken]
            return None
        if session.owner != owner:
            return NotOwner(session.owner)
        del self._sessions[stoken]
        return session

    async def put_back(self, stoken: str, session: IssuanceSession) -> float:
        """Hold `session` under `stoken` again if it is still live; its expiry is unchanged.

        It goes to the back of the insertion order though it expires before the sessions
        opened meanwhile: the sweep stops at them, so it may stay in memory up to one TTL
        after expiring (still counted in the size bound); `take` checks the expiry anyway.
        Returns the seconds it has left, 0.0 for a session that expired while it was taken.
        """
        now = self._clock()
        if session.expires_at <= now:
            return 0.0
        if stoken not in self._sessions:
            self._make_room(now)
            self._sessions[stoken] = session
            self._sweep_when_due(now)
        return session.expires_at - now
