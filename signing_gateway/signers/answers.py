"""A signer's answer read within bounds, and let go of once read.

`read_bounded` reads a 2xx body up to `MAX_RESPONSE_BYTES`, as it arrives and inflated within
that limit when the signer compressed it unasked; a longer, undecodable or cut body is a
malformed answer. `raise_for_answer` turns a refusal into its `SignerResponseError`, reading a
short refusal body to its end first so its connection can be reused. `release_response` lets
a finished response go without the cyclic collector. `signers.http.request_json` and
`probe_signer` use them for every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib

import aiohttp
import httpx

from signing_gateway.signers.errors import SignerMalformedResponseError
from signing_gateway.signers.failures import response_error
from signing_gateway.signers.transport import coding_list

__all__ = ["MAX_RESPONSE_BYTES", "raise_for_answer", "read_bounded", "release_response"]

#: Largest signer response body accepted. A real answer is a few KiB; anything bigger is
#: treated as malformed rather than buffered.
MAX_RESPONSE_BYTES = 64 * 1024

#: What a finished response's ``stream`` is replaced with (``release_response``): empty.
_SPENT_STREAM = httpx.ByteStream(b"")


def release_response(response: httpx.Response) -> None:
    """Break httpx's ``Response`` <-> ``BoundAsyncStream`` reference cycle once it is closed.

    ``AsyncClient`` wraps every response's stream in a ``BoundAsyncStream`` that points back at
    the response, so reference counting never frees a finished signer answer: the response,
    the transport's response, its headers and buffers (~50 objects per call) wait for the
    cyclic garbage collector, which then frees them on the event loop, thousands at a time
    under load. Replacing the closed stream lets them go the moment the call is done.
    """
    response.stream = _SPENT_STREAM


def _declared_length(response: httpx.Response) -> int | None:
    """The answer's ``Content-Length`` when it is one (ASCII digits: ``isdigit`` takes "²")."""
    declared = response.headers.get("Content-Length", "")
    return int(declared) if declared.isascii() and declared.isdigit() else None


#: zlib's window bits for each content coding a signer's answer may carry, as httpx reads
#: them: gzip, and deflate (zlib-wrapped; raw deflate too, tried when the wrapped read fails).
#: And x-gzip, which RFC 9110 (8.4.1.3) asks a recipient to take as gzip.
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class _Inflater:
    """Undoes an answer's content coding a chunk at a time, never past a limit.

    httpx inflates each chunk whole, before a size check can see it: a signer answering 16 KB
    of gzip (within `MAX_RESPONSE_BYTES` on the wire) made the gateway allocate 48 MB, and 58
    KB held the event loop ~0.25 s. Here no call to zlib makes more than the room left under
    the limit. Only signers that compress although asked not to come here.
    """

    __slots__ = ("_coding", "_zlib")

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._zlib = zlib.decompressobj(_WBITS[coding])

    def inflate(self, chunk: bytes, room: int, *, first: bool) -> bytes:
        """At most `room` (> 0) bytes of what `chunk` inflates to; zlib.error if it cannot."""
        try:
            return self._zlib.decompress(chunk, room)
        except zlib.error:
            if not (first and self._coding == "deflate"):
                raise
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._zlib.decompress(chunk, room)

    def held_back(self) -> bool:
        """Whether input is left that did not fit in the room given."""
        return bool(self._zlib.unconsumed_tail)

    def whole(self) -> bool:
        """Whether the stream came to its end, and nothing after it (a second gzip member too).

        A gzip or zlib stream ends with a checksum of what it holds (and gzip with its length):
        a body cut before them inflates as far as it goes, without a word from zlib.
        """
        return self._zlib.eof and not self._zlib.unused_data


def _inflater(response: httpx.Response, *, signer: str, endpoint: str) -> _Inflater | None:
    """The inflater for the answer's ``Content-Encoding`` (None: none), or malformed."""
    header = response.headers.get("Content-Encoding")
    if header is None:  # the usual case: nothing to look at
        return None
    codings = [coding for coding in coding_list([header]) if coding != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in _WBITS:
        return _Inflater(codings[0])
    raise _undecodable(response, signer=signer, endpoint=endpoint)


def _undecodable(
    response: httpx.Response, *, signer: str, endpoint: str
) -> SignerMalformedResponseError:
    return SignerMalformedResponseError(
        "undecodable body", signer=signer, endpoint=endpoint, status_code=response.status_code
    )


async def read_bounded(
    response: httpx.Response, limit: int, *, signer: str, endpoint: str
) -> bytes:
    """Read the body, refusing (as malformed) anything longer than ``limit`` bytes.

    Compressed or not: a compressed body is refused once its bytes on the wire, or what they
    inflate to, pass ``limit``, and is inflated no further than that (`_Inflater`). And as
    undecodable unless it holds one whole stream, no more: cut short of its end (its
    checksum), or with anything after it, a second gzip member too.
    """
    declared = _declared_length(response)
    if declared is not None and declared > limit:
        raise _too_big(response, limit, signer=signer, endpoint=endpoint)
    if response.is_stream_consumed:  # built with its content, decoded already (a mock's)
        chunks, inflater = response.aiter_bytes(), None
    else:
        chunks = response.aiter_raw()
        inflater = _inflater(response, signer=signer, endpoint=endpoint)
    body = bytearray()
    received = 0
    async for chunk in chunks:
        first = not received
        received += len(chunk)
        if inflater is None:
            body += chunk
        elif received > limit:  # more on the wire than any answer inflates from
            raise _too_big(response, limit, signer=signer, endpoint=endpoint)
        else:
            try:
                body += inflater.inflate(chunk, limit + 1 - len(body), first=first)
            except zlib.error as exc:
                raise _undecodable(response, signer=signer, endpoint=endpoint) from exc
        if len(body) > limit or (inflater is not None and inflater.held_back()):
            raise _too_big(response, limit, signer=signer, endpoint=endpoint)
    if inflater is not None and not inflater.whole():
        raise _undecodable(response, signer=signer, endpoint=endpoint)
    return bytes(body)


def _too_big(
    response: httpx.Response, limit: int, *, signer: str, endpoint: str
) -> SignerMalformedResponseError:
    return SignerMalformedResponseError(
        f"body over {limit} bytes",
        signer=signer,
        endpoint=endpoint,
        status_code=response.status_code,
    )


#: Largest refusal body read to the end so its connection can be reused (see raise_for_answer).
_DRAINED_ERROR_BYTES = 4096
#: Longest wait for the rest of such a body (seconds). Its status and headers are in: a body of
#: a few KiB follows at once or the signer has stalled, and the answer is known either way.
_DRAIN_ERROR_SECONDS = 0.1


async def raise_for_answer(response: httpx.Response, *, signer: str, endpoint: str) -> None:
    """Raise `response_error`'s SignerError for the answer, if any, leaving no cycle behind.

    A small refusal body (declared at most `_DRAINED_ERROR_BYTES`) is read first: a response
    closed with its body unread closes its connection, so a throttling signer would see a new
    connection (and TLS handshake) for every call it refuses, just when it is overloaded.
    Measured on a kept-alive 503: httpcore reconnected for every refused call before. That
    read gets `_DRAIN_ERROR_SECONDS` of its own: bounded only by the attempt, a body that
    stalled after its status turned a 429 with `Retry-After` into an attempt timeout (a 504,
    and a failure for the breaker). Cut short, the read leaves the body unfinished, so the
    connection is closed rather than pooled, and the status raises as it would have.

    A raised exception's traceback holds the frames it passed through, and a frame holds its
    locals: raising an exception that a local of a frame on its way still names makes a
    reference cycle (exception -> traceback -> frame -> exception). Every failed signer call
    then left its response, request and headers (29 objects per call, measured) to the
    cyclic garbage collector instead of freeing them at once, and under a signer outage that
    is every call. Here the only such local is dropped on the way out.
    """
    failure = response_error(response, signer=signer, endpoint=endpoint)
    if failure is None:
        return
    declared = _declared_length(response)
    if (
        declared is not None
        and declared <= _DRAINED_ERROR_BYTES
        and not response.is_stream_consumed
    ):
        # If reading fails or stalls the refusal stands; its connection is closed, not reused.
        # Read as it came (compressed or not): only its end matters, not its content.
        with contextlib.suppress(httpx.HTTPError, aiohttp.ClientError, TimeoutError):
            async with asyncio.timeout(_DRAIN_ERROR_SECONDS):
                async for _ in response.aiter_raw():
                    pass
    try:
        raise failure
    finally:
        del failure
