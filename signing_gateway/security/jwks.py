"""The public keys caller tokens are checked against: a JWKS from a file or from a URL.

`JwksKeys` holds one parsed key set. `StaticJwks` reads a file once at start-up. `RemoteJwks`
fetches an identity provider's JWKS with its own `httpx.AsyncClient` at start-up and again
every `refresh_interval` in a background task; a token naming an unknown kid (the provider
rotated its keys) may trigger one extra fetch per `min_refresh_interval`, shared by every
request that asks meanwhile and bounded by the fetch timeout. A request never starts a
fetch of its own, and never waits on one longer than that timeout. While it waits it holds
no CPU-gate permit (`io_wait`): the token's signature is checked only after the wait, so
anyone can make requests wait, and they must not park the gated requests of everyone else.
A request whose kid is known never waits.

A refresh that fails in any way (the provider, the document, or a bug) keeps the keys held
and is logged; the refresher tries again at its next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
import orjson

from signing_gateway.runtime.cpu_gate import io_wait
from signing_gateway.runtime.tasks import cancel_and_wait
from signing_gateway.security.tls_contexts import client_tls_context

logger = logging.getLogger(__name__)

#: Key types whose keys can only verify (never mint) with the public half we hold.
_ASYMMETRIC_KTY = frozenset({"RSA", "EC", "OKP"})
_ALGORITHM_FAMILY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
MAX_JWKS_BYTES = 256 * 1024


class JwksError(Exception):
    """Raised when a key set cannot be read or holds no usable key."""


def _family(algorithm: str) -> str | None:
    return _ALGORITHM_FAMILY.get(algorithm[:2])


def _verifies(key_ops: object) -> bool:
    """Whether a JWK's `key_ops` (RFC 7517 section 4.3) lets it verify signatures.

    A key published for other operations only (`encrypt`, `wrapKey`) is another party's
    key, as one whose `use` is `enc` is: whoever holds its private half must mint no tokens.
    """
    return isinstance(key_ops, list) and "verify" in key_ops


def _why(exc: Exception, timeout: float) -> str:
    """What went wrong with a JWKS fetch, in words an operator can act on."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, httpx.HTTPStatusError):
        # Its own text repeats the URL; the status is what matters.
        return f"the server answered {exc.response.status_code}"
    # A connection or TLS failure (say, CERTIFICATE_VERIFY_FAILED), or a document that will
    # not do: the reason is in the text.
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, httpx.HTTPError) else str(exc)


class JwksKeys:
    """One key set: asymmetric public keys by kid; symmetric and private keys are refused.

    A key whose `kid` is not a string is skipped (logged), as RFC 7517 section 5 asks of
    keys with invalid members: no token can name it (a token's kid must be a string), and
    refusing the whole document instead would keep the previous key set, including any key
    the provider has just withdrawn.

    Several keys may share a kid (none, or one given to keys of different types, as RFC 7517
    section 4.5 allows): all are kept, and a token gets one only when exactly one of them fits
    its algorithm, never a guess.
    """

    def __init__(self, document: Mapping[str, Any]) -> None:
        """Keep the usable keys of a parsed JWKS document; raise JwksError if none is."""
        keys = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(keys, list):
            raise JwksError("a JWKS document is an object with a `keys` list")
        self._jwks: dict[str | None, list[dict[str, Any]]] = {}
        self._count = 0
        for index, jwk in enumerate(keys):
            kty = jwk.get("kty") if isinstance(jwk, dict) else None
            if not isinstance(kty, str) or kty not in _ASYMMETRIC_KTY:
                continue  # "oct" (HMAC) keys would let their holder mint tokens: never used
            if "d" in jwk:
                raise JwksError("the JWKS holds a private key; publish only public keys")
            if jwk.get("use", "sig") != "sig" or not _verifies(jwk.get("key_ops", ["verify"])):
                continue
            kid = jwk.get("kid")
            if kid is not None and not isinstance(kid, str):
                logger.warning(
                    "JWKS key skipped: its kid is not a string",
                    extra={"key_index": index, "kid_type": type(kid).__name__},
                )
                continue
            self._jwks.setdefault(kid, []).append(jwk)
            self._count += 1
        if not self._count:
            raise JwksError("the JWKS holds no usable public signing key")
        self._prepared: dict[tuple[str | None, str], jwt.PyJWK] = {}

    def __len__(self) -> int:
        """Number of usable keys."""
        return self._count

    @classmethod
    def from_bytes(cls, raw: bytes) -> JwksKeys:
        """Parse a JWKS document."""
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise JwksError("the JWKS is not JSON") from exc
        return cls(document)

    def has(self, kid: str | None) -> bool:
        """True when a token naming `kid` (None: no kid) has a key here."""
        return self._count == 1 if kid is None else kid in self._jwks

    def key_for(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        """The key for `kid` bound to `algorithm`, or None when there is none or they clash.

        A token without kid is accepted only while the set holds exactly one key. The key's
        own `alg`, when published, must equal the token's; its type must fit the algorithm.
        Of keys sharing the kid, exactly one may fit, or none is handed out.
        """
        if kid is None:
            named = [jwk for jwks in self._jwks.values() for jwk in jwks] if self.has(kid) else []
        else:
            named = self._jwks.get(kid, [])
        fitting = [
            jwk
            for jwk in named
            if jwk.get("alg", algorithm) == algorithm and _family(algorithm) == jwk["kty"]
        ]
        if len(fitting) != 1:
            return None
        (jwk,) = fitting
        cache_key = (kid, algorithm)
        prepared = self._prepared.get(cache_key)
        if prepared is None:
            try:
                prepared = jwt.PyJWK(jwk, algorithm=algorithm)
            except jwt.PyJWTError:
                return None
            self._prepared[cache_key] = prepared
        return prepared


async def _read_capped(response: httpx.Response) -> bytes:
    """The body, refused as soon as it passes `MAX_JWKS_BYTES`, or when it is compressed.

    Read whole before its size was checked, an endless body took the gateway's memory. The
    client asks for no content coding (`jwks_http_client`): httpx would inflate each chunk
    whole before any check could see it (64 KiB of gzip is some 64 MiB), so an answer
    compressed all the same is refused, and its bytes are read as they came.
    """
    coding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in {"", "identity"}:
        raise JwksError("the JWKS came with a content coding, though none was asked for")
    # A response built with its content (a mock's) is read already: it has no raw stream.
    chunks = response.aiter_bytes() if response.is_stream_consumed else response.aiter_raw()
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > MAX_JWKS_BYTES:
            raise JwksError("the JWKS is too large")
    return bytes(body)


class KeySource(Protocol):
    """Where the authenticator gets the key for a token."""

    async def keys_for(self, kid: str | None) -> JwksKeys:
        """The key set to look `kid` up in (may refresh first, bounded)."""
        ...


class StaticJwks:
    """A JWKS read from a file at start-up."""

    def __init__(self, keys: JwksKeys) -> None:
        """Hold the parsed keys."""
        self._keys = keys

    @classmethod
    def read(cls, path: Path) -> StaticJwks:
        """Read and parse `path` (sync: call from start-up code, e.g. via asyncio.to_thread)."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise JwksError(f"cannot read the JWKS file {path}") from exc
        return cls(JwksKeys.from_bytes(raw))

    async def keys_for(self, kid: str | None) -> JwksKeys:  # noqa: ARG002 - one fixed set
        """The file's keys."""
        return self._keys


class RemoteJwks:
    """A JWKS fetched from a URL, refreshed in the background and (rarely) on an unknown kid."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        refresh_interval: float,
        min_refresh_interval: float,
        fetch_timeout: float,
        clock: Any = time.monotonic,  # noqa: ANN401 - a zero-argument callable returning seconds
    ) -> None:
        """Use `http` (opened by the caller) to fetch `url`."""
        self._http = http
        self._url = url
        self._refresh_interval = refresh_interval
        self._min_interval = min_refresh_interval
        self._timeout = fetch_timeout
        self._clock = clock
        self._keys: JwksKeys | None = None
        self._last_attempt = float("-inf")
        self._inflight: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.fetches = 0

    async def _fetch(self) -> None:
        self.fetches += 1
        self._last_attempt = self._clock()
        # The whole fetch within the timeout: httpx's bounds each read, not the body, so a
        # server sending a byte now and then held the refresh, and with it every later one.
        async with (
            asyncio.timeout(self._timeout),
            self._http.stream("GET", self._url, timeout=self._timeout) as response,
        ):
            response.raise_for_status()
            raw = await _read_capped(response)
        self._keys = JwksKeys.from_bytes(raw)

    async def _refresh_logged(self) -> None:
        # Raises nothing but CancelledError (not an Exception): the refresher loop must outlive
        # one failed refresh, and a request waiting on this fetch must not get its error. The
        # keys we have are kept: a provider outage or a bad document must not lock callers out.
        try:
            await self._fetch()
        except (httpx.HTTPError, JwksError, TimeoutError) as exc:
            logger.warning("JWKS refresh failed", extra={"error": type(exc).__name__})
        except Exception:
            logger.exception("JWKS refresh failed unexpectedly")

    async def start(self) -> None:
        """Fetch once and start the refresher.

        Raises:
            JwksError: the fetch failed; its message says why, without the URL.
        """
        try:
            await self._fetch()
        except (httpx.HTTPError, JwksError, TimeoutError) as exc:
            why = _why(exc, self._timeout)
            raise JwksError(f"could not fetch the JWKS at start-up: {why}") from exc
        self._task = asyncio.create_task(self._run(), name="jwks-refresher")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval)
            await self._shared_refresh()

    async def _shared_refresh(self) -> None:
        if self._inflight is None or self._inflight.done():
            # In a context of its own: it is shared, so it must not carry the request id, CPU
            # permit or trace of whichever request happened to start it.
            self._inflight = asyncio.create_task(
                self._refresh_logged(), name="jwks-fetch", context=contextvars.Context()
            )
        await asyncio.shield(self._inflight)

    async def keys_for(self, kid: str | None) -> JwksKeys:
        """The current keys; refresh first when `kid` is unknown and the rate limit allows.

        A known kid never waits. An unknown one waits (bounded) for the shared fetch, with the
        request's CPU permit handed on meanwhile.
        """
        keys = self._keys
        if keys is None:
            raise JwksError("no JWKS loaded")
        if keys.has(kid):
            return keys
        refreshing = self._inflight is not None and not self._inflight.done()
        if refreshing or self._clock() - self._last_attempt >= self._min_interval:
            # Waiting on the provider is I/O: the CPU permit goes to the next request meanwhile.
            async with io_wait():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._timeout):
                        await self._shared_refresh()
        return self._keys or keys

    async def stop(self) -> None:
        """Stop the refresher and any fetch in flight.

        A request waiting on that fetch is cancelled with it, and answered as any request
        cancelled at shutdown is (`DrainMiddleware`: 503 `shutting-down`).
        """
        for task in (self._task, self._inflight):
            await cancel_and_wait(task)
        self._task = self._inflight = None


def jwks_http_client(*, ca_bundle: Path | None, timeout: float) -> httpx.AsyncClient:
    """The client that fetches a JWKS URL (reads the CA file: call at start-up)."""
    return httpx.AsyncClient(
        timeout=timeout,
        verify=client_tls_context(ca_bundle=ca_bundle),
        trust_env=False,
        follow_redirects=False,
        # No content coding: see `_read_capped`.
        headers={
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": "signing-gateway",
        },
    )
