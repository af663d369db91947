"""Issuance session tokens: single use, expiring, bounded; put back only if never sent."""

from __future__ import annotations

import contextlib

import pytest

from signing_gateway.errors import SignerTimedOut, SignerUnavailable
from signing_gateway.issuance.session import (
    SESSION_EXPIRED,
    SESSION_EXPIRES_FIRST,
    SESSION_KEPT,
    SESSION_SPENT,
    HeldSession,
)
from signing_gateway.issuance.stoken import InMemoryStokenStore
from signing_gateway.signers.errors import SignerConnectError, SignerTimeoutError


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_token_is_single_use():
    """A token gives back its prepare message once; the second take finds nothing."""
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10)
    token = await store.open({"issuerNonce": "n1"})
    first = await store.take(token)
    assert first is not None
    assert first.prepare_issue_message == {"issuerNonce": "n1"}
    assert await store.take(token) is None


async def test_token_expires_after_ttl():
    """A token taken after its TTL is refused."""
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10, clock=clock)
    token = await store.open({})
    clock.now += 60.001
    assert await store.take(token) is None


async def test_a_session_is_expired_from_the_instant_its_ttl_ends():
    """At exactly its TTL a session is gone for take, for put_back and for the sweep alike."""
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10, clock=clock)
    taken, untouched = await store.open({"i": 1}), await store.open({"i": 2})
    session = await store.take(taken)
    assert session is not None
    clock.now = 1060.0
    assert await store.take(untouched) is None
    assert await store.put_back(taken, session) == 0.0
    assert len(store) == 0
    assert await store.take(taken) is None
    await store.open({"i": 3})
    clock.now = 1120.0
    await store.open({"i": 4})  # sweeps the one that expired just now
    assert len(store) == 1


async def test_unknown_token_is_refused():
    """A token the store never issued is refused."""
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10)
    assert await store.take("00000000-0000-4000-8000-000000000000") is None


async def test_expired_sessions_are_swept_and_size_is_bounded():
    """Expired sessions are dropped on open, and a full store drops its oldest session."""
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=10, max_sessions=3, clock=clock)
    old = [await store.open({"i": i}) for i in range(3)]
    clock.now += 11
    await store.open({"i": 3})
    assert len(store) == 1
    newest = [await store.open({"i": i}) for i in range(4, 7)]
    assert len(store) == 3
    assert all([await store.take(t) is None for t in old])
    assert await store.take(newest[-1]) is not None


async def test_the_sweep_drops_only_expired_sessions():
    """Opening a session sweeps the expired ones from the front; live ones stay usable."""
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10, clock=clock)
    expired = await store.open({"i": 1})
    clock.now += 30
    live = await store.open({"i": 2})
    clock.now += 31  # the first has expired, the second has 29 s left
    newest = await store.open({"i": 3})
    assert len(store) == 2
    assert await store.take(expired) is None
    for token in (live, newest):
        assert await store.take(token) is not None


async def test_tokens_are_distinct_uuids():
    """Every session gets its own unguessable UUID token."""
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=1000)
    tokens = {await store.open({}) for _ in range(200)}
    assert len(tokens) == 200
    assert all(len(t) == 36 for t in tokens)


async def test_put_back_session_is_usable_once_more_until_its_first_expiry():
    """A session put back can be taken once again, but only until its original expiry."""
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10, clock=clock)
    token = await store.open({"issuerNonce": "n1"})
    clock.now += 50
    session = await store.take(token)
    assert session is not None
    assert await store.put_back(token, session) == 10  # the seconds it has left
    again = await store.take(token)
    assert again is not None
    assert again.prepare_issue_message == {"issuerNonce": "n1"}
    assert await store.take(token) is None
    await store.put_back(token, again)
    clock.now += 10.001
    assert await store.take(token) is None


async def test_expired_session_is_not_put_back():
    """A session that expired while it was out of the store stays gone."""
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10, clock=clock)
    token = await store.open({})
    session = await store.take(token)
    assert session is not None
    clock.now += 60.001
    assert await store.put_back(token, session) == 0.0
    assert len(store) == 0
    assert await store.take(token) is None


async def test_put_back_keeps_the_size_bound():
    """Putting a session back into a full store drops the oldest one, as opening does."""
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=2)
    first = await store.open({"i": 1})
    session = await store.take(first)
    assert session is not None
    others = [await store.open({"i": i}) for i in (2, 3)]
    await store.put_back(first, session)
    assert len(store) == 2
    assert await store.take(others[0]) is None
    assert await store.take(first) is not None


async def test_a_second_put_back_leaves_the_store_as_it_is():
    """A token already live again is not written twice: no other session is dropped for room."""
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=2)
    first = await store.open({"i": 1})
    session = await store.take(first)
    assert session is not None
    second = await store.open({"i": 2})
    assert await store.put_back(first, session) > 0
    assert await store.put_back(first, session) > 0
    assert len(store) == 2
    assert await store.take(second) is not None
    assert await store.take(first) is not None


async def _timed_out() -> None:
    raise SignerTimeoutError("read", signer="domestic", endpoint="issue")


async def _refused() -> None:
    raise SignerConnectError("refused", signer="domestic", endpoint="issue")


async def test_a_session_an_earlier_attempt_may_have_used_stays_used():
    """Once any attempt may have reached the signer, a later never-sent one does not keep it."""
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10)
    token = await store.open({"issuerNonce": "n1"})

    async def issue() -> None:
        async with HeldSession(store, token) as held:
            for attempt in (_timed_out, _refused):
                with contextlib.suppress(SignerTimeoutError, SignerConnectError):
                    await held.attempt(attempt)
            raise SignerTimedOut("domestic: the signer did not answer in time", part="domestic")

    with pytest.raises(SignerTimedOut) as info:
        await issue()
    assert info.value.detail.endswith(SESSION_SPENT)
    assert await store.take(token) is None


async def test_a_session_that_expired_while_held_is_not_said_to_be_kept():
    """Never sent, but past its TTL when the request ends: the detail says to start again."""
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10, clock=clock)
    token = await store.open({"issuerNonce": "n1"})

    async def issue() -> None:
        async with HeldSession(store, token) as held:
            with contextlib.suppress(SignerConnectError):
                await held.attempt(_refused)
            clock.now += 60
            raise SignerUnavailable("domestic: the signer cannot be reached", part="domestic")

    with pytest.raises(SignerUnavailable) as info:
        await issue()
    assert info.value.detail.endswith(SESSION_EXPIRED)
    assert await store.take(token) is None


@pytest.mark.parametrize(
    ("retry_after", "advice"),
    [
        (19.0, SESSION_KEPT),
        (19.2, SESSION_EXPIRES_FIRST),
        (20.0, SESSION_EXPIRES_FIRST),
        (21.0, SESSION_EXPIRES_FIRST),
    ],
    ids=["ends-before", "said-as-ending-with-it", "ends-with-it", "ends-after"],
)
async def test_a_retry_after_ending_as_the_session_does_says_to_start_again(
    retry_after: float, advice: str
):
    """Pin that a Retry-After ending just when the session expires counts as too late.

    A retry sent as advised arrives at the instant the session stops being live, which
    `take` already refuses: only a wait that ends before the expiry keeps the stoken. The
    wait is the one the answer gives, in whole seconds rounded up: 19.2 s is said as 20.
    """
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10, clock=clock)
    token = await store.open({"issuerNonce": "n1"})
    clock.now += 40  # 20 s left when the session goes back

    async def issue() -> None:
        async with HeldSession(store, token):
            raise SignerUnavailable(
                "domestic: the signer is throttling", part="domestic", retry_after=retry_after
            )

    with pytest.raises(SignerUnavailable) as info:
        await issue()
    assert info.value.detail.endswith(advice)
    assert await store.take(token) is not None  # never sent: back in the store either way
