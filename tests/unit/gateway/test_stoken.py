"""Issuance session tokens: single use, expiring, bounded; put back only if never sent."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator

import pytest

from signing_gateway.errors import SignerTimedOut, SignerUnavailable, StokenInvalid
from signing_gateway.issuance.session import (
    SESSION_EXPIRED,
    SESSION_EXPIRES_FIRST,
    SESSION_KEPT,
    SESSION_SPENT,
    HeldSession,
)
from signing_gateway.issuance.stoken import InMemoryStokenStore, IssuanceSession, NotOwner
from signing_gateway.signers.errors import SignerConnectError, SignerTimeoutError
from tests.support.polling import until
from tests.support.stoken_stores import STORE_KINDS, FakeClock, Stores, redis_on_clock

#: The subject of the caller that opens the sessions, and of one that did not.
OWNER = "backend-1"
OTHER = "backend-2"


@pytest.fixture(params=STORE_KINDS)
def stores(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stores]:
    """Each store in turn, in memory and in Redis (fakeredis), on one clock the test moves.

    Both keep the same promises (`issuance/stoken.py`): every test taking this runs on both.
    """
    stores = Stores(request.param)
    with redis_on_clock(monkeypatch, stores.clock):
        yield stores


async def test_token_is_single_use(stores: Stores):
    """A token gives back its prepare message once; the second take finds nothing."""
    store = stores.store()
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    first = await store.take(token, owner=OWNER)
    assert first is not None
    assert first.prepare_issue_message == {"issuerNonce": "n1"}
    assert await store.take(token, owner=OWNER) is None


@pytest.mark.parametrize("caller", [OWNER, OTHER], ids=["owner", "another-caller"])
async def test_token_expires_after_ttl(stores: Stores, caller: str):
    """A token taken after its TTL is refused and dropped, whoever takes it.

    Another caller learns nothing of an expired session: `NotOwner` is for a live one only.
    """
    store = stores.store()
    token = await store.open({}, owner=OWNER)
    stores.clock.now += 60.001
    assert await store.take(token, owner=caller) is None
    assert await stores.held(store) == 0


async def test_a_session_is_expired_from_the_instant_its_ttl_ends(stores: Stores):
    """At exactly its TTL a session is gone for take and for put_back alike."""
    store = stores.store()
    taken, untouched = (
        await store.open({"i": 1}, owner=OWNER),
        await store.open({"i": 2}, owner=OWNER),
    )
    session = await store.take(taken, owner=OWNER)
    assert isinstance(session, IssuanceSession)
    stores.clock.now = 1059.999
    assert isinstance(await store.take(untouched, owner=OTHER), NotOwner)  # live to the last
    stores.clock.now = 1060.0
    assert await store.take(untouched, owner=OWNER) is None
    assert await store.put_back(taken, session) == 0.0
    assert await stores.held(store) == 0
    assert await store.take(taken, owner=OWNER) is None


async def test_the_sweep_drops_a_session_from_the_instant_its_ttl_ends():
    """At exactly its TTL the in-memory sweep drops a session, as take does."""
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10, clock=clock)
    await store.open({"i": 1}, owner=OWNER)
    clock.now = 1060.0
    await store.open({"i": 2}, owner=OWNER)  # sweeps the one that expired just now
    assert len(store) == 1


async def test_unknown_token_is_refused(stores: Stores):
    """A token the store never issued is refused."""
    store = stores.store()
    assert await store.take("00000000-0000-4000-8000-000000000000", owner=OWNER) is None


async def test_expired_sessions_are_swept_and_size_is_bounded():
    """Expired sessions are dropped on open, and a full store drops its oldest session."""
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=10, max_sessions=3, clock=clock)
    old = [await store.open({"i": i}, owner=OWNER) for i in range(3)]
    clock.now += 11
    await store.open({"i": 3}, owner=OWNER)
    assert len(store) == 1
    newest = [await store.open({"i": i}, owner=OWNER) for i in range(4, 7)]
    assert len(store) == 3
    assert all([await store.take(t, owner=OWNER) is None for t in old])
    assert await store.take(newest[-1], owner=OWNER) is not None


async def test_the_sweep_drops_only_expired_sessions():
    """Opening a session sweeps the expired ones from the front; live ones stay usable."""
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10, clock=clock)
    expired = await store.open({"i": 1}, owner=OWNER)
    clock.now += 30
    live = await store.open({"i": 2}, owner=OWNER)
    clock.now += 31  # the first has expired, the second has 29 s left
    newest = await store.open({"i": 3}, owner=OWNER)
    assert len(store) == 2
    assert await store.take(expired, owner=OWNER) is None
    for token in (live, newest):
        assert await store.take(token, owner=OWNER) is not None


async def test_expired_sessions_leave_the_store_with_no_call_after_them():
    """Sessions no issue followed leave memory as they expire, though no session is opened.

    Swept only when the next one was opened, they stayed for as long as none was: all the
    sessions of a burst of prepare-issue calls, for good once domestic issuance stopped. One
    taken and put back (behind the others) and one taken for good go alike.
    """
    store = InMemoryStokenStore(ttl_seconds=0.05, max_sessions=10)
    tokens = [await store.open({"i": i}, owner=OWNER) for i in range(4)]
    put_back = await store.take(tokens[0], owner=OWNER)
    assert put_back is not None
    assert await store.put_back(tokens[0], put_back) > 0
    assert await store.take(tokens[1], owner=OWNER) is not None
    await until(lambda: len(store) == 0, limit=2)  # and no timer is left: none is held


def _sweep_timers(store: InMemoryStokenStore) -> list[asyncio.TimerHandle]:
    """The timers waiting on the running loop to sweep `store`."""
    scheduled: list[asyncio.TimerHandle] = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
    return [
        handle
        for handle in scheduled
        if not handle.cancelled() and getattr(handle._callback, "__self__", None) is store
    ]


#: A value of the request that opens a session, which its sweep timer must not hold.
_REQUEST_VALUE: contextvars.ContextVar[object] = contextvars.ContextVar("request_value")


async def test_one_sweep_timer_at_most_and_close_cancels_it():
    """However many sessions are held, one timer waits for them; `close` cancels it.

    The timer holds nothing of the request that armed it (its context is its own).
    """
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10)
    _REQUEST_VALUE.set(object())
    for i in range(3):
        await store.open({"i": i}, owner=OWNER)
    (timer,) = _sweep_timers(store)
    assert _REQUEST_VALUE not in timer._context  # type: ignore[attr-defined]
    store.close()
    assert _sweep_timers(store) == []
    assert len(store) == 3  # closing drops no session


def _sweep_delays(store: InMemoryStokenStore) -> list[float]:
    """How long each of `store`'s sweep timers has left to wait (seconds)."""
    now = asyncio.get_running_loop().time()
    return [timer.when() - now for timer in _sweep_timers(store)]


def _ring(store: InMemoryStokenStore) -> None:
    """Run `store`'s one sweep timer now, as the loop does once it is due."""
    (timer,) = _sweep_timers(store)
    callback = timer._callback  # type: ignore[attr-defined]
    timer.cancel()
    callback()


async def test_the_sweep_timer_waits_for_the_oldest_session_then_the_next():
    """The timer waits for the oldest session, then the next oldest; none when none is left.

    Each ring sweeps what expired by then, to the instant, and no live session.
    """
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10, clock=clock)
    await store.open({"i": 0}, owner=OWNER)  # expires at 1060
    assert _sweep_delays(store) == pytest.approx([60], abs=0.5)
    clock.now = 1030.0
    await store.open({"i": 1}, owner=OWNER)  # 1090
    clock.now = 1050.0
    await store.open({"i": 2}, owner=OWNER)  # 1110
    assert _sweep_delays(store) == pytest.approx([60], abs=0.5)

    clock.now = 1060.0
    _ring(store)
    assert len(store) == 2
    assert _sweep_delays(store) == pytest.approx([30], abs=0.5)  # the oldest, not the newest
    clock.now = 1089.9995  # the next oldest is live for half a millisecond more
    _ring(store)
    assert len(store) == 2
    clock.now = 1090.0
    _ring(store)
    assert len(store) == 1
    assert _sweep_delays(store) == pytest.approx([20], abs=0.5)
    clock.now = 1110.0
    _ring(store)
    assert len(store) == 0
    assert _sweep_timers(store) == []


async def test_a_session_put_back_after_the_timer_found_none_is_swept_in_its_turn():
    """A put-back sets the timer when none waits, and no second one when one does.

    The last ring found the store empty (its one session out, being used), so none waits.
    """
    clock = FakeClock()
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=10, clock=clock)
    await store.open({"i": 0}, owner=OWNER)  # expires at 1060
    clock.now = 1030.0
    token = await store.open({"i": 1}, owner=OWNER)  # 1090
    session = await store.take(token, owner=OWNER)
    assert isinstance(session, IssuanceSession)
    clock.now = 1060.0
    _ring(store)  # sweeps the first; the second is out, being used
    assert len(store) == 0
    assert _sweep_timers(store) == []

    assert await store.put_back(token, session) == 30
    assert _sweep_delays(store) == pytest.approx([30], abs=0.5)
    other = await store.open({"i": 2}, owner=OWNER)
    taken = await store.take(other, owner=OWNER)
    assert isinstance(taken, IssuanceSession)
    assert await store.put_back(other, taken) == 60
    assert _sweep_delays(store) == pytest.approx([30], abs=0.5)


async def test_tokens_are_distinct_uuids(stores: Stores):
    """Every session gets its own unguessable UUID token."""
    store = stores.store()
    tokens = {await store.open({}, owner=OWNER) for _ in range(200)}
    assert len(tokens) == 200
    assert all(len(t) == 36 for t in tokens)


async def test_put_back_session_is_usable_once_more_until_its_first_expiry(stores: Stores):
    """A session put back can be taken once again, but only until its original expiry."""
    clock = stores.clock
    store = stores.store()
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    clock.now += 50
    session = await store.take(token, owner=OWNER)
    assert session is not None
    clock.now += 2  # held by a request meanwhile: that time is gone too
    assert await store.put_back(token, session) == pytest.approx(8)  # the seconds it has left
    again = await store.take(token, owner=OWNER)
    assert isinstance(again, IssuanceSession)
    assert again.prepare_issue_message == {"issuerNonce": "n1"}
    assert await store.take(token, owner=OWNER) is None
    await store.put_back(token, again)
    clock.now += 7.999
    assert isinstance(await store.take(token, owner=OTHER), NotOwner)  # still live
    clock.now += 0.002
    assert await store.take(token, owner=OWNER) is None


async def test_expired_session_is_not_put_back(stores: Stores):
    """A session that expired while it was out of the store stays gone."""
    store = stores.store()
    token = await store.open({}, owner=OWNER)
    session = await store.take(token, owner=OWNER)
    assert session is not None
    stores.clock.now += 60.001
    assert await store.put_back(token, session) == 0.0
    assert await stores.held(store) == 0
    assert await store.take(token, owner=OWNER) is None


async def test_put_back_keeps_the_size_bound():
    """Putting a session back into a full store drops the oldest one, as opening does."""
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=2)
    first = await store.open({"i": 1}, owner=OWNER)
    session = await store.take(first, owner=OWNER)
    assert session is not None
    others = [await store.open({"i": i}, owner=OWNER) for i in (2, 3)]
    await store.put_back(first, session)
    assert len(store) == 2
    assert await store.take(others[0], owner=OWNER) is None
    assert await store.take(first, owner=OWNER) is not None


async def test_a_second_put_back_leaves_the_store_as_it_is():
    """A token already live again is not written twice: no other session is dropped for room."""
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=2)
    first = await store.open({"i": 1}, owner=OWNER)
    session = await store.take(first, owner=OWNER)
    assert session is not None
    second = await store.open({"i": 2}, owner=OWNER)
    assert await store.put_back(first, session) > 0
    assert await store.put_back(first, session) > 0
    assert len(store) == 2
    assert await store.take(second, owner=OWNER) is not None
    assert await store.take(first, owner=OWNER) is not None


async def test_another_callers_take_neither_gets_nor_uses_up_the_session(stores: Stores):
    """Pin that a session is its opener's: another caller's take gets nothing and spends nothing.

    Before, any caller holding the stoken took the session: a leaked stoken could be spent, or
    burnt under its owner, by whoever found it.
    """
    store = stores.store()
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    refused = await store.take(token, owner=OTHER)
    assert refused == NotOwner(OWNER), refused
    assert await stores.held(store) == 1  # still held
    assert await store.take(token, owner=OTHER) == NotOwner(OWNER)  # as often as it is tried
    session = await store.take(token, owner=OWNER)
    assert isinstance(session, IssuanceSession)
    assert (session.prepare_issue_message, session.owner) == ({"issuerNonce": "n1"}, OWNER)
    assert await store.take(token, owner=OWNER) is None
    assert await store.take(token, owner=OTHER) is None  # used: unknown to every caller


@pytest.mark.parametrize(
    "caller",
    ["backend-1", "BACKEND-1", "Backend-1 ", "Backend-", "", "anonymous"],
    ids=["lower-case", "upper-case", "trailing-space", "prefix", "empty", "anonymous"],
)
async def test_a_subject_alike_but_not_the_same_is_another_caller(stores: Stores, caller: str):
    """Pin that a session's owner is its subject to the character, as the token gives it.

    A subject differing only in case, a space, or being a prefix of it, is another caller,
    and so is the anonymous one of a gateway without authentication: each is refused as
    `NotOwner`, and the session stays for the subject that opened it.
    """
    opener = "Backend-1"
    store = stores.store()
    token = await store.open({"issuerNonce": "n1"}, owner=opener)
    assert await store.take(token, owner=caller) == NotOwner(opener)
    session = await store.take(token, owner=opener)
    assert isinstance(session, IssuanceSession)
    assert session.owner == opener


async def test_another_callers_take_leaves_the_sessions_expiry_as_it_was(stores: Stores):
    """Pin that a session presented by another caller still expires when it was to.

    Neither cut short (its owner can use it until then) nor lengthened (a foreign caller
    presenting it again and again cannot keep it alive).
    """
    clock = stores.clock
    store = stores.store()
    used, left = await store.open({"i": 1}, owner=OWNER), await store.open({"i": 2}, owner=OWNER)
    clock.now += 59
    for token in (used, left):
        assert await store.take(token, owner=OTHER) == NotOwner(OWNER)
    clock.now += 0.5
    assert await store.take(used, owner=OWNER) is not None
    clock.now += 0.5
    assert await store.take(left, owner=OWNER) is None
    assert await stores.held(store) == 0


async def test_another_callers_take_does_not_keep_the_session_from_being_dropped_for_room():
    """Pin that another caller's take leaves the session where it was in the store's order.

    A full store drops its oldest session; a session that another caller presented is still
    the oldest, so a flood of foreign takes cannot keep one session alive at others' cost.
    """
    store = InMemoryStokenStore(ttl_seconds=60, max_sessions=2)
    first = await store.open({"i": 1}, owner=OWNER)
    second = await store.open({"i": 2}, owner=OWNER)
    assert await store.take(first, owner=OTHER) == NotOwner(OWNER)
    await store.open({"i": 3}, owner=OWNER)
    assert len(store) == 2
    assert await store.take(first, owner=OWNER) is None
    assert await store.take(second, owner=OWNER) is not None


async def test_a_session_put_back_stays_its_owners(stores: Stores):
    """Pin that the put-back of an unsent /issue keeps the owner: only it can take it again."""
    store = stores.store()
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    session = await store.take(token, owner=OWNER)
    assert isinstance(session, IssuanceSession)
    assert await store.put_back(token, session) > 0
    assert await store.take(token, owner=OTHER) == NotOwner(OWNER)
    again = await store.take(token, owner=OWNER)
    assert isinstance(again, IssuanceSession)
    assert again.owner == OWNER


async def test_another_callers_stoken_is_refused_as_an_unknown_one(stores: Stores):
    """Held for another caller: the unknown stoken's 401 to the word, and the session stays.

    Only `cause`, which the audit record alone carries, tells the two refusals apart.
    """
    store = stores.store()
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    refusals = []
    for stoken, caller in ((token, OTHER), ("3f1c0a4e-0000-4000-8000-000000000000", OWNER)):
        with pytest.raises(StokenInvalid) as info:
            async with HeldSession(store, stoken, owner=caller):
                pytest.fail("a refused session was entered")
        refusals.append(info.value)
    foreign, unknown = refusals
    assert (foreign.status, foreign.title, foreign.detail, foreign.headers()) == (
        unknown.status,
        unknown.title,
        unknown.detail,
        unknown.headers(),
    )
    assert foreign.extensions() == unknown.extensions() == {}
    assert (foreign.cause, unknown.cause) == ("stoken-not-owned", "stoken-unknown")
    async with HeldSession(store, token, owner=OWNER) as held:
        assert held.prepare_issue_message == {"issuerNonce": "n1"}


async def _timed_out() -> None:
    raise SignerTimeoutError("read", signer="domestic", endpoint="issue")


async def _refused() -> None:
    raise SignerConnectError("refused", signer="domestic", endpoint="issue")


async def test_a_session_an_earlier_attempt_may_have_used_stays_used(stores: Stores):
    """Once any attempt may have reached the signer, a later never-sent one does not keep it."""
    store = stores.store()
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)

    async def issue() -> None:
        async with HeldSession(store, token, owner=OWNER) as held:
            for attempt in (_timed_out, _refused):
                with contextlib.suppress(SignerTimeoutError, SignerConnectError):
                    await held.attempt(attempt)
            raise SignerTimedOut("domestic: the signer did not answer in time", part="domestic")

    with pytest.raises(SignerTimedOut) as info:
        await issue()
    assert info.value.detail.endswith(SESSION_SPENT)
    assert await store.take(token, owner=OWNER) is None


async def test_a_session_that_expired_while_held_is_not_said_to_be_kept(stores: Stores):
    """Never sent, but past its TTL when the request ends: the detail says to start again."""
    clock = stores.clock
    store = stores.store()
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)

    async def issue() -> None:
        async with HeldSession(store, token, owner=OWNER) as held:
            with contextlib.suppress(SignerConnectError):
                await held.attempt(_refused)
            clock.now += 60
            raise SignerUnavailable("domestic: the signer cannot be reached", part="domestic")

    with pytest.raises(SignerUnavailable) as info:
        await issue()
    assert info.value.detail.endswith(SESSION_EXPIRED)
    assert await store.take(token, owner=OWNER) is None


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
    stores: Stores, retry_after: float, advice: str
):
    """Pin that a Retry-After ending just when the session expires counts as too late.

    A retry sent as advised arrives at the instant the session stops being live, which
    `take` already refuses: only a wait that ends before the expiry keeps the stoken. The
    wait is the one the answer gives, in whole seconds rounded up: 19.2 s is said as 20.
    """
    clock = stores.clock
    store = stores.store()
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    clock.now += 40  # 20 s left when the session goes back

    async def issue() -> None:
        async with HeldSession(store, token, owner=OWNER):
            raise SignerUnavailable(
                "domestic: the signer is throttling", part="domestic", retry_after=retry_after
            )

    with pytest.raises(SignerUnavailable) as info:
        await issue()
    assert info.value.detail.endswith(advice)
    assert (
        await store.take(token, owner=OWNER) is not None
    )  # never sent: back in the store either way
