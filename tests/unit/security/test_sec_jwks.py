"""JWKS parsing and the remote key set's refresh rules."""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import jwt
import orjson
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from signing_gateway.observability.context import current_request_id, request_id_var
from signing_gateway.security.jwks import (
    MAX_JWKS_BYTES,
    JwksError,
    JwksKeys,
    RemoteJwks,
    jwks_http_client,
)
from signing_gateway.security.settings import AuthSettings
from signing_gateway.security.setup import open_token_verifier
from signing_gateway.security.tokens import LocalTokenIssuer
from signing_gateway.start_up import StartUpError
from tests.support.polling import until


def _issuer(kid: str) -> LocalTokenIssuer:
    return LocalTokenIssuer(issuer="i", audience="a", kid=kid)


def test_symmetric_keys_are_never_used():
    """An `oct` (HMAC) key in a JWKS is ignored; a set of only such keys is refused."""
    with pytest.raises(JwksError, match="no usable"):
        JwksKeys({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]})


def test_private_keys_are_refused():
    """A JWKS that publishes a private key is refused outright."""
    jwk = _issuer("p").jwks()["keys"][0]
    with pytest.raises(JwksError, match="private"):
        JwksKeys({"keys": [{**jwk, "d": "AAAA"}]})


def test_key_is_bound_to_its_algorithm():
    """An EC key published for ES256 is not handed out for RS256 or PS256."""
    keys = JwksKeys(_issuer("k").jwks())
    assert keys.key_for("k", "ES256") is not None
    assert keys.key_for("k", "RS256") is None
    assert keys.key_for("other", "ES256") is None


def test_rsa_key_is_bound_to_its_published_algorithm():
    """An RSA key published for RS256 is not handed out for PS256, though both take RSA keys."""
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    jwk = {**RSAAlgorithm.to_jwk(public, as_dict=True), "kid": "r", "alg": "RS256"}
    keys = JwksKeys({"keys": [jwk]})
    assert keys.key_for("r", "RS256") is not None
    assert keys.key_for("r", "PS256") is None


def test_an_okp_key_verifies_eddsa_tokens_and_no_other_algorithm():
    """Pin that an Ed25519 key (`OKP`, RFC 8037) serves EdDSA tokens, an accepted algorithm.

    It is an asymmetric key like RSA and EC ones, and EdDSA is its one algorithm: it is handed
    out for no ES256 token, and an EC key for no EdDSA one.
    """
    private = ed25519.Ed25519PrivateKey.generate()
    okp = {**OKPAlgorithm.to_jwk(private.public_key(), as_dict=True), "kid": "ed"}
    keys = JwksKeys({"keys": [okp, _issuer("ec").jwks()["keys"][0]]})
    assert len(keys) == 2
    token = jwt.encode({"sub": "s"}, private, algorithm="EdDSA", headers={"kid": "ed"})
    key = keys.key_for("ed", "EdDSA")
    assert key is not None
    assert jwt.decode(token, key=key, algorithms=["EdDSA"]) == {"sub": "s"}
    assert keys.key_for("ed", "ES256") is None
    assert keys.key_for("ec", "EdDSA") is None


def test_keys_published_for_another_use_than_signing_are_never_used():
    """A `use` other than `sig` (an unregistered one, or `sig` in capitals) verifies no token."""
    for use in ("tls", "SIG", ""):
        other = {**_issuer("other").jwks()["keys"][0], "use": use}
        with pytest.raises(JwksError, match="no usable"):
            JwksKeys({"keys": [other]})


def test_a_key_without_alg_verifies_each_algorithm_of_its_type_as_that_algorithm():
    """An RSA key that names no `alg` serves RS256 and PS256 tokens, in any order, each as its own.

    Prepared once per kid and algorithm: one prepared for RS256 handed out for a PS256 token
    would refuse it as a bad signature.
    """
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = JwksKeys(
        {"keys": [{**RSAAlgorithm.to_jwk(private.public_key(), as_dict=True), "kid": "r"}]}
    )
    for algorithm in ("RS256", "PS256", "RS256"):
        token = jwt.encode({"sub": "s"}, private, algorithm=algorithm, headers={"kid": "r"})
        key = keys.key_for("r", algorithm)
        assert key is not None
        assert jwt.decode(token, key=key, algorithms=[algorithm]) == {"sub": "s"}


def test_keys_published_for_encryption_are_never_used():
    """A key whose `use` is `enc` verifies no token; a set of only such keys is refused."""
    signing = _issuer("sig").jwks()["keys"][0]
    encryption = {**_issuer("enc").jwks()["keys"][0], "use": "enc"}
    keys = JwksKeys({"keys": [signing, encryption]})
    assert keys.key_for("enc", "ES256") is None
    assert keys.key_for("sig", "ES256") is not None
    with pytest.raises(JwksError, match="no usable"):
        JwksKeys({"keys": [encryption]})


@pytest.mark.parametrize("key_ops", [["encrypt"], ["wrapKey", "unwrapKey"], [], "verify"])
def test_keys_published_for_other_operations_are_never_used(key_ops: object):
    """A key whose `key_ops` lacks `verify` verifies no token, as one whose `use` is `enc`."""
    signing = _issuer("sig").jwks()["keys"][0]
    other = {**_issuer("other").jwks()["keys"][0], "key_ops": key_ops}
    del other["use"]
    keys = JwksKeys({"keys": [signing, other]})
    assert keys.key_for("other", "ES256") is None
    assert JwksKeys({"keys": [{**other, "key_ops": ["verify"]}]}).key_for("other", "ES256")
    with pytest.raises(JwksError, match="no usable"):
        JwksKeys({"keys": [other]})


def test_a_token_without_kid_gets_the_only_key_and_never_a_guess_among_several():
    """Without a kid, a one-key set hands out that key; a set of two hands out neither."""
    one = JwksKeys(_issuer("a").jwks())
    assert one.has(None)
    assert one.key_for(None, "ES256") is not None
    two = JwksKeys({"keys": [_issuer("a").jwks()["keys"][0], _issuer("b").jwks()["keys"][0]]})
    assert not two.has(None)
    assert two.key_for(None, "ES256") is None


def _without_kid(issuer: LocalTokenIssuer) -> dict[str, Any]:
    jwk = issuer.jwks()["keys"][0]
    del jwk["kid"]
    return jwk


def test_keys_without_kid_are_all_kept_and_none_is_guessed():
    """Two keys without kid are two keys: a token without kid gets neither, not the last.

    They were one entry, the later replacing the earlier: a token signed with the earlier
    key was refused as a bad signature, one signed with the later taken though two were held.
    """
    keys = JwksKeys({"keys": [_without_kid(_issuer("a")), _without_kid(_issuer("b"))]})
    assert len(keys) == 2
    assert not keys.has(None)
    assert keys.key_for(None, "ES256") is None


def test_a_key_without_kid_beside_a_named_one_is_no_guess_either():
    """A token without kid gets no key from a set of two, whether the others are named or not."""
    keys = JwksKeys({"keys": [_issuer("a").jwks()["keys"][0], _without_kid(_issuer("b"))]})
    assert not keys.has(None)
    assert keys.key_for(None, "ES256") is None
    assert keys.key_for("a", "ES256") is not None


def test_a_token_without_kid_gets_no_key_from_a_set_of_keys_of_other_types():
    """An EC and an RSA key: a token without kid gets neither, though only one fits its alg.

    A token without kid is taken only while the set holds one key: the provider publishing a
    second (a rotation under way) must not leave the choice to the token's header.
    """
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_jwk = {**RSAAlgorithm.to_jwk(public, as_dict=True), "kid": "r", "alg": "RS256"}
    keys = JwksKeys({"keys": [rsa_jwk, _issuer("e").jwks()["keys"][0]]})
    assert not keys.has(None)
    assert keys.key_for(None, "ES256") is None
    assert keys.key_for(None, "RS256") is None


def test_keys_of_other_types_may_share_a_kid():
    """An EC and an RSA key under one kid (RFC 7517 4.5) each verify their own algorithm."""
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_jwk = {**RSAAlgorithm.to_jwk(public, as_dict=True), "kid": "same", "alg": "RS256"}
    keys = JwksKeys({"keys": [rsa_jwk, _issuer("same").jwks()["keys"][0]]})
    assert len(keys) == 2
    assert keys.key_for("same", "RS256") is not None
    assert keys.key_for("same", "ES256") is not None
    assert keys.key_for("same", "PS256") is None


def test_two_keys_fitting_one_token_under_one_kid_hand_out_neither():
    """Two EC keys under one kid: an ES256 token could be either, so it gets neither."""
    keys = JwksKeys(
        {"keys": [_issuer("same").jwks()["keys"][0], _issuer("same").jwks()["keys"][0]]}
    )
    assert keys.has("same")
    assert keys.key_for("same", "ES256") is None


def test_keys_of_other_types_sharing_a_kid_need_no_alg_to_be_told_apart():
    """An EC and an RSA key under one kid, neither naming its `alg`, each serve their own type.

    The key's type tells them apart: a token gets the one key fitting its algorithm, where
    counting both as candidates would hand out neither.
    """
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_jwk = {**RSAAlgorithm.to_jwk(public, as_dict=True), "kid": "same"}
    ec_jwk = {k: v for k, v in _issuer("same").jwks()["keys"][0].items() if k != "alg"}
    keys = JwksKeys({"keys": [rsa_jwk, ec_jwk]})
    assert keys.key_for("same", "ES256") is not None
    assert keys.key_for("same", "PS256") is not None
    assert keys.key_for("same", "EdDSA") is None


def test_a_key_that_does_not_load_verifies_nothing_and_raises_nothing():
    """A published key with a point off its curve is no key: `key_for` answers None.

    Its token is then refused 401 `unknown-key`, where PyJWT's error would reach the route
    as a 500.
    """
    jwk = _issuer("off-curve").jwks()["keys"][0]
    keys = JwksKeys({"keys": [{**jwk, "y": jwk["x"]}]})
    assert keys.key_for("off-curve", "ES256") is None


@pytest.mark.parametrize(
    "malformed",
    [{"kid": ["rotated"]}, {"kid": {"id": "rotated"}}, {"kid": 7}, {"kty": ["EC"]}],
    ids=["kid-list", "kid-object", "kid-number", "kty-list"],
)
def test_keys_with_malformed_members_are_skipped(malformed: dict[str, Any]):
    """A key whose kid or kty is not a string is skipped; the other keys of the set are kept."""
    good = _issuer("good").jwks()["keys"][0]
    keys = JwksKeys({"keys": [good, {**_issuer("bad").jwks()["keys"][0], **malformed}]})
    assert len(keys) == 1
    assert keys.key_for("good", "ES256") is not None
    with pytest.raises(JwksError, match="no usable"):
        JwksKeys({"keys": [{**good, **malformed}]})


JWKS_URL = "https://idp.test/jwks"


@asynccontextmanager
async def started(
    handler: Callable[[httpx.Request], Awaitable[httpx.Response]], **timing: Any
) -> AsyncIterator[RemoteJwks]:
    """A `RemoteJwks` fetching from `handler`, started for the block and stopped after it."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        remote = RemoteJwks(http, JWKS_URL, **timing)
        await remote.start()
        try:
            yield remote
        finally:
            await remote.stop()


class Idp:
    """A JWKS endpoint whose key set can be rotated or broken; counts fetches."""

    def __init__(self, issuer: LocalTokenIssuer) -> None:
        self.jwks: Any = issuer.jwks()
        self.status = 200
        self.error: Exception | None = None
        self.fetches = 0
        self.fetching = asyncio.Event()
        self.release: asyncio.Event | None = None

    def hold(self) -> asyncio.Event:
        """From now on a fetch (noted in `fetching`) waits until the returned event is set."""
        self.fetching.clear()
        self.release = asyncio.Event()
        return self.release

    async def handler(self, _: httpx.Request) -> httpx.Response:
        self.fetches += 1
        self.fetching.set()
        if self.release is not None:
            await self.release.wait()
        if self.error is not None:
            raise self.error
        return httpx.Response(self.status, json=self.jwks)


def _rate_limited(
    idp: Idp, now: list[float], *, fetch_timeout: float = 2
) -> AbstractAsyncContextManager[RemoteJwks]:
    """`started` on `idp`: an unknown kid refetches at most once per 30 s of `now[0]`."""
    return started(
        idp.handler,
        refresh_interval=3600,
        min_refresh_interval=30,
        fetch_timeout=fetch_timeout,
        clock=lambda: now[0],
    )


async def test_the_refresher_fetches_again_once_per_refresh_interval():
    """After the start-up fetch, the next comes one `refresh_interval` later, not sooner."""
    idp = Idp(_issuer("k"))
    fetched_at: list[float] = []
    handler = idp.handler

    async def timed(request: httpx.Request) -> httpx.Response:
        fetched_at.append(time.monotonic())
        return await handler(request)

    async with started(timed, refresh_interval=0.2, min_refresh_interval=3600, fetch_timeout=2):
        await until(lambda: len(fetched_at) >= 2)
    assert fetched_at[1] - fetched_at[0] >= 0.2


async def test_unknown_kid_refreshes_at_most_once_per_interval():
    """Unknown kids trigger one fetch, then none until min_refresh_interval has passed."""
    idp = Idp(_issuer("old"))
    now = [1000.0]
    async with _rate_limited(idp, now) as remote:
        assert idp.fetches == 1
        now[0] += 31
        idp.jwks = _issuer("new").jwks()
        assert (await remote.keys_for("new")).has("new")
        assert idp.fetches == 2
        for _ in range(10):
            assert not (await remote.keys_for("attacker-chosen")).has("attacker-chosen")
        assert idp.fetches == 2
        now[0] += 31
        await remote.keys_for("attacker-chosen")
        assert idp.fetches == 3


def _break(idp: Idp, how: str) -> None:
    if how == "empty":
        idp.jwks = {"keys": []}
    elif how == "malformed-kid":
        idp.jwks = {"keys": [{**idp.jwks["keys"][0], "kid": ["k2"]}]}
    elif how == "http-503":  # an error answer, though its body reads as another key set
        idp.status = 503
        idp.jwks = _issuer("rotated").jwks()
    elif how == "too-large":  # another key set, padded past the size cap
        idp.jwks = {**_issuer("rotated").jwks(), "padding": "x" * MAX_JWKS_BYTES}
    else:  # a bug anywhere in the fetch: an exception nobody expects
        idp.error = RuntimeError("unexpected")


FAILURES = ["empty", "malformed-kid", "http-503", "too-large", "unexpected-exception"]


async def test_a_key_set_of_just_the_size_cap_is_taken():
    """Pin the cap's edge: a JWKS document of exactly MAX_JWKS_BYTES is read."""
    unpadded = len(json.dumps({**_issuer("k").jwks(), "padding": ""}))
    padding = "x" * (MAX_JWKS_BYTES - unpadded)
    document = json.dumps({**_issuer("k").jwks(), "padding": padding}).encode()
    assert len(document) == MAX_JWKS_BYTES

    async def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=document)

    timing = {"refresh_interval": 3600, "min_refresh_interval": 0, "fetch_timeout": 2}
    async with started(handler, **timing) as remote:
        assert (await remote.keys_for("k")).has("k")


def _padded(size: int) -> bytes:
    """A JWKS document of exactly `size` bytes (key `k`), padded with an unknown member."""
    unpadded = len(json.dumps({**_issuer("k").jwks(), "padding": ""}))
    document = json.dumps({**_issuer("k").jwks(), "padding": "x" * (size - unpadded)}).encode()
    assert len(document) == size
    return document


async def test_the_size_cap_is_the_documented_256_kib():
    """Pin the documented cap: a JWKS of 256 KiB is read, one byte more fails the start."""
    for size, taken in ((256 * 1024, True), (256 * 1024 + 1, False)):
        document = _padded(size)

        async def handler(_: httpx.Request, document: bytes = document) -> httpx.Response:
            return httpx.Response(200, content=document)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            remote = RemoteJwks(
                http, JWKS_URL, refresh_interval=3600, min_refresh_interval=0, fetch_timeout=2
            )
            if taken:
                await remote.start()
                await remote.stop()
            else:
                with pytest.raises(JwksError, match="too large"):
                    await remote.start()


@pytest.mark.parametrize("how", FAILURES)
async def test_failed_refresh_keeps_the_keys(how: str):
    """When a refresh fails in any way, the keys already loaded keep verifying tokens."""
    idp = Idp(_issuer("k"))
    now = [0.0]
    async with started(
        idp.handler, refresh_interval=3600, min_refresh_interval=1, fetch_timeout=2,
        clock=lambda: now[0],
    ) as remote:  # fmt: skip
        _break(idp, how)
        now[0] += 5
        keys = await remote.keys_for("unknown")
        assert idp.fetches == 2
        assert keys.has("k")


@pytest.mark.parametrize("how", [*FAILURES[:-1], "no-answer"])
async def test_an_expected_refresh_failure_is_one_warning_naming_its_error(
    how: str, caplog: pytest.LogCaptureFixture
):
    """Pin that a provider's or a document's failure logs a warning with the error's name.

    Such failures are the provider's to fix (a timeout among them), not a bug here: they are
    logged without a traceback, unlike an unexpected exception.
    """
    idp = Idp(_issuer("k"))
    now = [1000.0]
    async with _rate_limited(idp, now, fetch_timeout=0.2) as remote:
        with caplog.at_level(logging.WARNING, logger="signing_gateway.security.jwks"):
            if how == "no-answer":
                idp.hold()
            else:
                _break(idp, how)
            now[0] += 31
            assert (await remote.keys_for("unknown")).has("k")
            await until(lambda: any(r.message == "JWKS refresh failed" for r in caplog.records))
    [failure] = [r for r in caplog.records if r.message.startswith("JWKS refresh failed")]
    assert failure.levelno == logging.WARNING
    assert failure.exc_info is None
    expected = {"no-answer": "TimeoutError", "http-503": "HTTPStatusError"}
    assert failure.__dict__["error"] == expected.get(how, "JwksError")


@pytest.mark.parametrize("how", FAILURES)
async def test_refresher_outlives_a_failed_refresh(how: str, caplog: pytest.LogCaptureFixture):
    """After a failed background refresh the refresher goes on and picks up a rotated key."""
    idp = Idp(_issuer("old"))
    async with started(
        idp.handler, refresh_interval=0.01, min_refresh_interval=3600, fetch_timeout=2
    ) as remote:
        with caplog.at_level(logging.WARNING, logger="signing_gateway.security.jwks"):
            _break(idp, how)
            await until(lambda: idp.fetches >= 3)
            assert (await remote.keys_for("old")).has("old")
            idp.jwks, idp.status, idp.error = _issuer("new").jwks(), 200, None
            await until(lambda: remote._keys is not None and remote._keys.has("new"))
    failures = [r for r in caplog.records if r.message.startswith("JWKS refresh failed")]
    if how == "unexpected-exception":  # logged with its traceback: a bug to look into
        assert failures
        assert all(r.exc_info is not None for r in failures)
    elif how == "malformed-kid":
        assert any(r.message.startswith("JWKS key skipped") for r in caplog.records)


async def test_unknown_kid_waits_no_longer_than_the_fetch_timeout():
    """While the provider hangs, an unknown kid gets the keys held once fetch_timeout is over."""
    idp = Idp(_issuer("k"))
    timing = {"refresh_interval": 3600, "min_refresh_interval": 0, "fetch_timeout": 0.2}
    async with started(idp.handler, **timing) as remote:
        idp.hold()  # the refetch hangs until the end of the test
        keys = await asyncio.wait_for(remote.keys_for("unknown"), timeout=5)
    assert keys.has("k")
    assert idp.fetches == 2


async def test_known_kid_never_waits_for_a_refresh_in_flight():
    """While a refetch hangs on the provider, a token with a known kid gets its key at once."""
    idp = Idp(_issuer("k"))
    async with started(
        idp.handler, refresh_interval=3600, min_refresh_interval=0, fetch_timeout=5
    ) as remote:
        release = idp.hold()
        waiting = asyncio.create_task(remote.keys_for("unknown"))
        async with asyncio.timeout(1):
            await idp.fetching.wait()
        async with asyncio.timeout(0.5):
            assert (await remote.keys_for("k")).has("k")
        assert not waiting.done()
        release.set()
        assert not (await waiting).has("unknown")


async def test_stop_cancels_a_refresh_in_flight():
    """Stopping ends the refresher and cancels its fetch: a cancellation is never swallowed."""
    idp = Idp(_issuer("k"))
    async with started(
        idp.handler, refresh_interval=0.01, min_refresh_interval=3600, fetch_timeout=5
    ) as remote:
        idp.hold()
        async with asyncio.timeout(1):
            await idp.fetching.wait()
        refresher, fetch = remote._task, remote._inflight
        assert refresher is not None
        assert fetch is not None
        async with asyncio.timeout(1):
            await remote.stop()
        assert refresher.cancelled()
        assert fetch.cancelled()


async def _answer_slowly(_: httpx.Request) -> httpx.Response:
    await asyncio.sleep(5)
    return httpx.Response(200)


async def _refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


async def _answer_503(_: httpx.Request) -> httpx.Response:
    return httpx.Response(503)


async def _answer_html(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="<html>sign in</html>")


async def _time_out_connecting(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectTimeout("timed out", request=request)


@pytest.mark.parametrize(
    ("handler", "why"),
    [
        (_answer_503, "the server answered 503"),
        (_refuse_connection, "ConnectError: [Errno 111] Connection refused"),
        (_answer_html, "the JWKS is not JSON"),
        (_answer_slowly, "no answer within 0.1 s"),
        (_time_out_connecting, "no answer within 0.1 s"),
    ],
    ids=["status", "connect", "not-json", "timeout", "client-timeout"],
)
async def test_start_fails_without_a_key_set_and_says_why(
    handler: Callable[[httpx.Request], Awaitable[httpx.Response]], why: str
):
    """An unreachable or unusable JWKS at start-up stops the gateway, with the reason."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        remote = RemoteJwks(
            http, JWKS_URL, refresh_interval=60, min_refresh_interval=1, fetch_timeout=0.1
        )
        with pytest.raises(JwksError) as refused:
            await remote.start()
    assert str(refused.value) == f"could not fetch the JWKS at start-up: {why}"
    assert "idp.test" not in str(refused.value)


async def test_the_gateway_names_the_setting_when_the_first_fetch_fails():
    """A start-up error (logged as one line, no traceback) naming the variable, not the URL."""
    settings = AuthSettings(
        jwks_url=JWKS_URL, audience="a", issuer="i", jwks_fetch_timeout_seconds=1
    )
    with respx.mock(assert_all_called=True) as idp:
        idp.get(JWKS_URL).mock(return_value=httpx.Response(404))
        async with AsyncExitStack() as stack:
            with pytest.raises(StartUpError) as refused:
                await open_token_verifier(settings, stack)
    assert str(refused.value) == (
        "SIGNING_GATEWAY_AUTH__JWKS_URL: could not fetch the JWKS at start-up: "
        "the server answered 404"
    )


async def test_start_gives_up_on_a_provider_that_never_answers():
    """A JWKS endpoint that hangs at start-up fails the start within the fetch timeout."""
    idp = Idp(_issuer("k"))
    idp.hold()
    async with httpx.AsyncClient(transport=httpx.MockTransport(idp.handler)) as http:
        remote = RemoteJwks(
            http, JWKS_URL, refresh_interval=60, min_refresh_interval=1, fetch_timeout=0.2
        )
        async with asyncio.timeout(5):
            with pytest.raises(JwksError):
                await remote.start()


async def test_jwks_client_does_not_follow_a_redirect():
    """A JWKS URL answering with a redirect fails the start; the keys it points to are not read."""
    with respx.mock(assert_all_called=False) as router:
        router.get(JWKS_URL).respond(302, headers={"Location": "https://elsewhere.test/jwks"})
        elsewhere = router.get("https://elsewhere.test/jwks").respond(json=_issuer("k").jwks())
        async with jwks_http_client(ca_bundle=None, timeout=1) as http:
            remote = RemoteJwks(
                http, JWKS_URL, refresh_interval=60, min_refresh_interval=1, fetch_timeout=1
            )
            with pytest.raises(JwksError):
                await remote.start()
    assert not elsewhere.called


async def test_a_refetch_started_by_a_request_does_not_carry_its_context():
    """The shared fetch runs without the request id (or permit) of the request that began it."""
    idp = Idp(_issuer("old"))
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(current_request_id())
        return await idp.handler(request)

    async with started(
        handler, refresh_interval=3600, min_refresh_interval=0, fetch_timeout=2
    ) as remote:
        token = request_id_var.set("req-that-started-it")
        try:
            await remote.keys_for("unknown")
        finally:
            request_id_var.reset(token)
    assert seen == ["-", "-"]


@functools.cache
def gzip_bomb() -> bytes:
    """A JSON document of 64 MiB of white space, gzip-compressed to some 64 KiB."""
    return gzip.compress(b"{}" + b" " * (64 << 20), compresslevel=9)


class LoopbackIdp:
    """A JWKS endpoint on a real socket: it serves the key set, or sends without end."""

    def __init__(self, issuer: LocalTokenIssuer) -> None:
        self.document = orjson.dumps(issuer.jwks())
        self.behaviour = "serve"
        self.fetches = 0
        self.sent = 0
        self.heads: list[bytes] = []
        # Answers still being sent when the test ends stop then, and are waited for: a handler
        # cancelled with the loop is an error asyncio only logs (and the test fails on it).
        self.stopping = False
        self.handlers: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        """End every answer still being sent, and wait for them."""
        self.stopping = True
        async with asyncio.timeout(5):
            await asyncio.gather(*self.handlers)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)
        self.heads.append(await reader.readuntil(b"\r\n\r\n"))
        self.fetches += 1
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        try:
            if self.behaviour == "serve":
                body = self.document
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            elif self.behaviour == "gzip":  # compressed though not asked: 64 MiB in 64 KiB
                body = gzip_bomb()
                head += b"Content-Encoding: gzip\r\n"
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            elif self.behaviour == "trickle":  # a byte now and then, each within the timeout
                writer.write(head + b"Content-Length: 1000000\r\n\r\n")
                while not self.stopping:
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.05)
            else:  # "endless": as fast as the gateway reads
                writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
                chunk = b" " * 65536
                while not self.stopping:
                    writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    await writer.drain()
                    self.sent += len(chunk)
            await writer.drain()
        except ConnectionError:
            pass  # the gateway gave up on this answer
        finally:
            writer.close()


@asynccontextmanager
async def loopback_remote(idp: LoopbackIdp, **timing: Any) -> AsyncIterator[RemoteJwks]:
    """A started `RemoteJwks` fetching from `idp` over loopback with the gateway's client."""
    server = await asyncio.start_server(idp.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with jwks_http_client(ca_bundle=None, timeout=timing["fetch_timeout"]) as http:
            remote = RemoteJwks(http, f"http://127.0.0.1:{port}/jwks", **timing)
            await remote.start()
            try:
                yield remote
            finally:
                await remote.stop()
    finally:
        server.close()
        await idp.stop()


async def test_a_refresh_ends_within_the_fetch_timeout_while_the_provider_trickles():
    """A provider sending a byte now and then stalls no refresh past the fetch timeout.

    httpx's timeout bounds each read, so such an answer held the refresh for ever, and with it
    every later refresh: a rotated or withdrawn key was never seen again.
    """
    idp = LoopbackIdp(_issuer("old"))
    async with loopback_remote(
        idp, refresh_interval=0.01, min_refresh_interval=3600, fetch_timeout=0.3
    ) as remote:
        idp.behaviour = "trickle"
        await until(lambda: idp.fetches >= 3)
        idp.document = orjson.dumps(_issuer("new").jwks())
        idp.behaviour = "serve"
        await until(lambda: remote._keys is not None and remote._keys.has("new"))


async def test_an_endless_jwks_is_refused_once_past_the_size_cap():
    """A body without end is refused once past `MAX_JWKS_BYTES`, not read whole into memory."""
    idp = LoopbackIdp(_issuer("k"))
    async with loopback_remote(
        idp, refresh_interval=3600, min_refresh_interval=0, fetch_timeout=1
    ) as remote:
        idp.behaviour = "endless"
        async with asyncio.timeout(4):
            keys = await remote.keys_for("unknown")
        assert keys.has("k")
        assert idp.fetches == 2
    assert idp.sent < 64 * MAX_JWKS_BYTES


async def test_a_jwks_is_asked_for_uncompressed_and_refused_compressed():
    """A compressed answer is refused unread, not inflated whole before the size cap.

    Before, the client asked for gzip (httpx's default) and httpx inflated each chunk whole:
    64 KiB of gzip from the provider made a refresh allocate 64 MiB at once.
    """
    idp = LoopbackIdp(_issuer("k"))
    async with loopback_remote(
        idp, refresh_interval=3600, min_refresh_interval=0, fetch_timeout=2
    ) as remote:
        assert b"\r\naccept-encoding: identity\r\n" in idp.heads[0].lower()
        idp.behaviour = "gzip"
        gzip_bomb()  # made before the measurement, which is of the gateway's side
        tracemalloc.start()
        try:
            keys = await remote.keys_for("unknown")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert keys.has("k")
        assert idp.fetches == 2
    assert peak < 8 << 20, f"{peak / 2**20:.1f} MiB allocated for a refused JWKS"


@pytest.mark.parametrize(
    ("coding", "taken"),
    [("gzip", False), ("GZIP", False), ("br", False), ("identity", True), ("Identity", True)],
)
async def test_a_content_coded_jwks_fails_the_start_and_says_so(coding: str, taken: bool):
    """Pin that an answer with a content coding is refused as such, its body unread.

    The body here is the key set as it is, so only the header can refuse it. Codings are
    case-insensitive (RFC 9110 8.4.1): `Identity` is no coding at all.
    """
    document = orjson.dumps(_issuer("k").jwks())

    async def handler(_: httpx.Request) -> httpx.Response:
        # A stream, not `content`: httpx would inflate content at once, as the header says.
        stream = httpx.ByteStream(document)
        return httpx.Response(200, stream=stream, headers={"Content-Encoding": coding})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        remote = RemoteJwks(
            http, JWKS_URL, refresh_interval=3600, min_refresh_interval=0, fetch_timeout=2
        )
        if taken:
            await remote.start()
            assert (await remote.keys_for("k")).has("k")
            await remote.stop()
            return
        with pytest.raises(JwksError) as refused:
            await remote.start()
    assert str(refused.value) == (
        "could not fetch the JWKS at start-up: "
        "the JWKS came with a content coding, though none was asked for"
    )


async def test_an_unknown_kid_refetches_once_min_refresh_interval_has_passed_and_not_before():
    """Pin the edge: min_refresh_interval after the last fetch an unknown kid refetches."""
    idp = Idp(_issuer("old"))
    now = [1000.0]
    async with _rate_limited(idp, now) as remote:
        idp.jwks = _issuer("new").jwks()
        now[0] += 29.5
        assert not (await remote.keys_for("new")).has("new")
        now[0] += 0.5
        assert (await remote.keys_for("new")).has("new")
        assert idp.fetches == 2


@pytest.mark.parametrize("first_goes", [False, True], ids=["both-stay", "first-goes-away"])
async def test_an_unknown_kid_within_the_interval_waits_on_the_fetch_under_way(first_goes: bool):
    """A fetch under way is shared: an unknown kid coming meanwhile gets the keys it brings.

    The rate limit stops new fetches, not waiting on one that has begun: the keys it brings
    are those a token signed with a rotated key needs. The fetch is shared, not owned: a
    waiter whose caller goes away cancels only its own wait, not the fetch the others (or the
    background refresh) wait for.
    """
    idp = Idp(_issuer("old"))
    now = [1000.0]
    async with _rate_limited(idp, now, fetch_timeout=5) as remote:
        now[0] += 31
        idp.jwks = _issuer("new").jwks()
        release = idp.hold()
        first = asyncio.create_task(remote.keys_for("new"))
        async with asyncio.timeout(1):
            await idp.fetching.wait()
        second = asyncio.create_task(remote.keys_for("new"))
        if first_goes:
            await asyncio.sleep(0)  # the second is waiting too
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
        release.set()
        async with asyncio.timeout(1):
            assert first_goes or (await first).has("new")
            assert (await second).has("new")
        assert idp.fetches == 2


async def test_the_jwks_is_asked_for_as_json_by_the_gateway():
    """Pin the request's head: JSON asked for, and the gateway named as the client."""
    idp = LoopbackIdp(_issuer("k"))
    async with loopback_remote(idp, refresh_interval=3600, min_refresh_interval=0, fetch_timeout=2):
        pass
    head = idp.heads[0].lower()
    assert b"\r\naccept: application/json\r\n" in head
    assert b"\r\nuser-agent: signing-gateway\r\n" in head


async def test_a_key_set_not_yet_fetched_is_no_keys_not_a_crash():
    """Pin that asking before the first fetch is the `JwksError` the verifier answers 401 to."""
    idp = Idp(_issuer("k"))
    async with httpx.AsyncClient(transport=httpx.MockTransport(idp.handler)) as http:
        remote = RemoteJwks(
            http, JWKS_URL, refresh_interval=3600, min_refresh_interval=0, fetch_timeout=2
        )
        with pytest.raises(JwksError, match="no JWKS loaded"):
            await remote.keys_for("k")
    assert idp.fetches == 0


async def test_the_jwks_client_takes_no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    """Proxy variables in the gateway's environment are not used: keys come from the URL itself."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    idp = LoopbackIdp(_issuer("k"))
    async with loopback_remote(
        idp, refresh_interval=3600, min_refresh_interval=0, fetch_timeout=2
    ) as remote:
        assert (await remote.keys_for("k")).has("k")
    assert idp.fetches == 1
