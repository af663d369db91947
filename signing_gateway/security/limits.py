"""Pure ASGI middleware that bounds request bodies before anything parses them.

Every request first: a path holding an encoded slash (`/v1%2Fdcc`) is refused with 400. The
server decodes it into a `/` that routes, where RFC 3986 makes `%2F` data within one segment
and a proxy in front (Envoy's default) keeps it so: a rule there for `/v1/dcc` would not see
the request the gateway signs. No path of the gateway holds one.
Then `Authorization`, `Content-Type` or `Host` given twice is refused with 400
before anything reads them. Each may appear once only (RFC 9110 5.3; for `Host` RFC 9112 3.2
requires the 400), and a proxy in front may pick the other of the two than the gateway would:
for `Authorization` that is whose token is checked. An HTTP/1.1 request without `Host`, and
one whose `Host` is no host, are refused with 400 too, as the same section of RFC 9112 requires.
Found in the one pass over the header fields that reads the body's framing below.

For a request that carries a body (a Content-Length above 0, or chunked):

1. a transfer coding besides `chunked` (`Transfer-Encoding: gzip, chunked`) is refused with
   400, a non-JSON Content-Type or any content coding (`Content-Encoding` other than
   `identity`) with 415, all before a byte is read: the gateway decodes neither, so it would
   check and sign bytes other than the representation the caller declared;
2. a declared Content-Length above the limit is refused with 413 at once, and a chunked body
   is counted while it streams in and refused as soon as it passes the limit (so at most
   `max_body_bytes` are ever buffered);
3. the whole body must arrive within `body_read_timeout_seconds` of the first read, else 408
   with `Connection: close`: a caller that sends part of a body and stops, or drips it, holds
   its connection that long and no longer;
4. the body must be JSON (orjson, UTF-8) no deeper than `max_json_depth` with no string or
   key longer than `max_json_string_chars` and no object of more than `MAX_OBJECT_MEMBERS`
   members, else 422. Python's own parser, which the check
   of step 5 may run, would hit its recursion limit (a 500) on deeply nested input; the route
   then validates the body with pydantic's parser (`api.bodies.read_body`);
5. no object in it may name a key twice (I-JSON, RFC 7493 2.3), else 422: parsers disagree on
   which of the two counts (most take the last, some the first), so a caller's own validator
   could have checked another value than the one the gateway would sign. orjson keeps the last
   without a word, so the body's colons are counted against those of orjson's value written
   out again (`repeats_a_key`; Python's parser when the body escapes a colon), only in a body
   orjson took and found within the limits above.

Neither step 4 nor step 5 takes a Python step per value of the body, which made the largest
bodies within the limits cost several times more (docs/security.md, the costliest bodies).

A request that expects `100 Continue` holds its body back until the first read asks for it:
before that read, the head check the middleware is given (`head_check`: the bearer token's,
`security.auth.authenticate_head`) may refuse it, after the refusals above that the head
decides, so a caller without a valid token is answered 401, and one whose token lacks the
route's scope 403, without sending its body.

The buffered body is then replayed to the app. Refusals are problem+json and echo nothing
of the body.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signing_gateway.errors import PROBLEM_BASE, send_problem
from signing_gateway.security.json_shape import (
    REPEATED_KEY,
    check_json_shape,
    repeats_a_key,
    too_deep,
)
from signing_gateway.security.settings import LimitsSettings

#: Bodies up to this size are checked on the event loop (well under a millisecond).
_INLINE_CHECK_BYTES = 16 * 1024
#: The most members an object of a body may have. The API's largest object has 10 (a DCC
#: entry), and every body model refuses a key it does not know, one error each: 15,000 unknown
#: keys in a 169 KB body kept pydantic busy on the event loop for 25 to 35 ms, reporting 15,001
#: errors. Refused here, such a body is parsed off the event loop and validated not at all.
#: (The lists are bounded by the body models: a DCC group is counted before its entries.)
MAX_OBJECT_MEMBERS: Final = 64
#: A declared length with more digits than this is over any configurable limit.
_MAX_LENGTH_DIGITS = 18


#: Header fields a request may carry once only, as they appear in an ASGI scope (lower case),
#: and as a refusal names them.
_AUTHORIZATION = b"authorization"
_CONTENT_TYPE = b"content-type"
_HOST = b"host"
_SINGLETON_NAMES = {_AUTHORIZATION: "Authorization", _CONTENT_TYPE: "Content-Type", _HOST: "Host"}


class BodyRefused(Exception):
    """Raised (inside this module) when a request breaks a limit; becomes a problem answer."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        read_whole: bool = False,
    ) -> None:
        """Describe the refusal; `headers`: fields its answer carries besides the usual.

        `read_whole`: the request's body had all been read when it was refused, so the
        connection is ready for the caller's next request and is kept.
        """
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = headers
        self.read_whole = read_whole


def _bad_request(detail: str) -> BodyRefused:
    """A 400 `bad-request` refusal saying `detail`: a request no server should take as sent."""
    return BodyRefused(400, "bad-request", "Bad request", detail)


#: The charset values taken: UTF-8's name, and `utf8`, the label many clients write (one of
#: UTF-8's labels in the WHATWG Encoding Standard, which browsers read as UTF-8). Any other
#: charset names an encoding the gateway would not decode the body in.
_UTF_8_NAMES = frozenset({"utf-8", "utf8"})


def _json_media_type(content_type: str | None) -> bool:
    """Whether `content_type` is `application/json`, its charset (if given) UTF-8."""
    if content_type is None:
        return False
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != "application/json":
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if (
            name.strip().lower() == "charset"
            and value.strip().strip('"').lower() not in _UTF_8_NAMES
        ):
            return False
    return True


def _framing(
    headers: Iterable[tuple[bytes, bytes]], *, host_required: bool
) -> tuple[bytes | None, bytes | None, bytes | None, bool, bool]:
    """A request's `Content-Length`, `Transfer-Encoding` and `Content-Type`, in one pass.

    Each is the first field of its name, as Starlette's `Headers` reads them, without its copy
    of the list or a KeyError per absent name; then whether any `Content-Encoding` field
    names a coding other than `identity`, and whether an `Expect` field asks for
    `100-continue` (as uvicorn sees it). Raises BodyRefused (400) for a repeated
    `Authorization`, `Content-Type` or `Host`, a `Host` whose value is no host, and a missing
    `Host` if `host_required`.
    """
    length = transfer_encoding = None
    encoded = expects_continue = False
    singletons: dict[bytes, bytes] = {}  # at most three
    for name, value in headers:
        if name in _SINGLETON_NAMES:
            if name in singletons:
                raise _repeated(name)
            singletons[name] = value
        elif name == b"content-length":
            if length is None:
                length = value
        elif name == b"transfer-encoding":
            if transfer_encoding is None:
                transfer_encoding = value
        elif name == b"content-encoding" and not encoded:
            encoded = bool(_codings(value) - {b"identity"})
        elif name == b"expect" and value.lower() == b"100-continue":
            expects_continue = True
    _check_host(singletons.get(_HOST), required=host_required)
    return length, transfer_encoding, singletons.get(_CONTENT_TYPE), encoded, expects_continue


#: A `Host` value (RFC 9110 7.2): RFC 3986's host, an IP literal in brackets or a registered
#: name (which takes an IPv4 address too), and an optional port.
_HOST_VALUE = re.compile(
    rb"(?:\[[0-9A-Za-z:._~%!$&'()*+,;=-]+\]|[0-9A-Za-z._~%!$&'()*+,;=-]*)(?::[0-9]*)?"
)


def _check_host(host: bytes | None, *, required: bool) -> None:
    """Raise BodyRefused (400) for a `Host` value that is no host, or none if `required`."""
    if host is None:
        if required:
            raise _bad_request(
                "the Host header field is missing: an HTTP/1.1 request must carry it"
            )
    elif not _HOST_VALUE.fullmatch(host):
        raise _bad_request("the Host header field holds no host name or address (RFC 9110 7.2)")


def _codings(value: bytes) -> set[bytes]:
    """The codings a `Transfer-Encoding` or `Content-Encoding` value names (lower case)."""
    return {coding.strip().lower() for coding in value.split(b",")} - {b""}


def _only_chunked(transfer_encoding: bytes) -> bool:
    """Whether a `Transfer-Encoding` value names `chunked` and no other transfer coding."""
    return _codings(transfer_encoding) == {b"chunked"}


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _repeated(name: bytes) -> BodyRefused:
    field = _SINGLETON_NAMES[name]
    return _bad_request(f"the {field} header field is repeated: a request may carry it once only")


def _encoded_slash() -> BodyRefused:
    return _bad_request("the path holds an encoded slash (%2F), which no path of the gateway has")


def _transfer_coded() -> BodyRefused:
    return _bad_request("a request body may be chunked, and have no other transfer coding")


def _content_coded() -> BodyRefused:
    # RFC 9110 15.5.16: a 415 for a content coding names those it takes in Accept-Encoding.
    return BodyRefused(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        "request bodies must not be content-coded: send them without a Content-Encoding",
        headers=((b"accept-encoding", b"identity"),),
    )


#: A body starting with U+FEFF. RFC 8259 8.1 lets a parser ignore it (MAY) and forbids a sender
#: to add it (MUST NOT): the gateway refuses it, as it rewrites no body it checks and signs from,
#: but says so, for the mark is invisible and "not JSON" sends the caller after a syntax error.
_BYTE_ORDER_MARK: Final = (
    "the body starts with a byte order mark (U+FEFF), which JSON sent over a network must "
    "not have (RFC 8259 8.1): send the JSON text without it"
)


#: How orjson begins the message of JSON nested past its own limit (1024 levels): valid JSON
#: that `max_json_depth` (at most 256) refuses anyway, and not to be called "not JSON".
_ORJSON_DEPTH_LIMIT: Final = "depth limit exceeded"


def _not_json(exc: orjson.JSONDecodeError) -> str:
    """The detail of a body orjson refused: a number out of a double's range is valid JSON.

    RFC 8259 puts no bound on a number; I-JSON (RFC 7493 2.2) asks for none beyond a double's
    range, and orjson refuses those. Saying "not JSON" would send the caller looking for a
    syntax error it does not have. Nothing of the body is quoted, only where the number is.
    A leading byte order mark is named too (`_BYTE_ORDER_MARK`).
    """
    if exc.msg.startswith("number is infinity"):
        return f"the body holds a number beyond the range of a double, at character {exc.pos}"
    if exc.msg.startswith("UTF-8 byte order mark"):
        return _BYTE_ORDER_MARK
    return "the body is not JSON"


def _invalid_json(reason: str) -> BodyRefused:
    """The 422 for a body read whole whose JSON breaks a rule: its connection is kept."""
    return BodyRefused(
        422, "validation-failed", "Request validation failed", reason, read_whole=True
    )


def _repeats_a_key(body: bytes, parsed: object) -> bool:
    """`repeats_a_key` for a body orjson read as `parsed`, which passed the shape check.

    Python's parser, which reads a body that escapes a colon, recurses once per level and
    gives up near 1,000, where orjson goes on to 1,024: that body nests far deeper than its
    value, which is within `max_json_depth` (at most 256). Only the member of an object that
    names its key again can be nested so and not be in the value: orjson kept the last.
    """
    try:
        return repeats_a_key(body, parsed)
    except RecursionError:
        return True


def _too_large(limit: int) -> BodyRefused:
    # Made where it is raised, never held in a local of a frame it passes through: that would
    # make a reference cycle (error -> traceback -> frame -> error) of every refused request.
    return BodyRefused(
        413,
        "body-too-large",
        "Request body too large",
        f"request bodies are limited to {limit} bytes",
    )


def _timed_out(seconds: float) -> BodyRefused:
    # Made where it is raised, as `_too_large` is.
    return BodyRefused(
        408,
        "body-timeout",
        "Request body timed out",
        f"the request body did not arrive within {seconds:g} s",
    )


async def _receive_bounded(receive: Receive, limit: int) -> bytes:
    """Read the body as it streams in; refuse it as soon as it passes `limit` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _bad_request("the client went away")
        body += message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return bytes(body)


class _Replay:
    """`receive` for the app: the checked body first, then the request's own `receive`.

    The app reads the body into a copy of its own, and this object lives as long as the
    request, so it lets go of the body once handed over (else every body would be held twice
    through the signer wait); slotted rather than a closure for the same reason.
    """

    __slots__ = ("_body", "_receive")

    def __init__(self, body: bytes, receive: Receive) -> None:
        self._body: bytes | None = body
        self._receive = receive

    async def __call__(self) -> Message:
        body, self._body = self._body, None
        if body is not None:
            return {"type": "http.request", "body": body, "more_body": False}
        return await self._receive()


#: A check of a request's head before its body is asked for: raises BodyRefused to refuse it.
HeadCheck = Callable[[Scope], Awaitable[None]]


class RequestLimitsMiddleware:
    """Refuse encoded slashes, repeated singleton fields; bound content type, body and JSON."""

    def __init__(
        self, app: ASGIApp, *, limits: LimitsSettings, head_check: HeadCheck | None = None
    ) -> None:
        """Wrap `app` with `limits`; `head_check` runs before a held-back body is asked for."""
        self.app = app
        self.limits = limits
        self.head_check = head_check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the header fields and the body (if any), then pass the request on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            raw_path: bytes = scope.get("raw_path") or b""
            # (Some servers' raw_path holds the query string too: a %2F there is no matter.)
            if b"%" in raw_path and b"%2f" in raw_path.partition(b"?")[0].lower():
                raise _encoded_slash()
            length, transfer_encoding, content_type, encoded, expects_continue = _framing(
                # HTTP/1.0 has no Host to require, HTTP/2 its :authority instead.
                scope["headers"],
                host_required=scope.get("http_version") == "1.1",
            )
        except BodyRefused as refusal:
            await self._refuse(scope, send, refusal)
            return
        if transfer_encoding is not None and not _only_chunked(transfer_encoding):
            # Refused even when it does not end in chunked (a body the server cannot frame).
            await self._refuse(scope, send, _transfer_coded())
            return
        chunked = transfer_encoding is not None
        # A length of zero, however many digits spell it ("00" is one), means no body.
        if not chunked and (length is None or not length.strip().lstrip(b"0")):
            await self.app(scope, receive, send)
            return
        try:
            self._check_framing(_text(content_type), _text(length), encoded=encoded)
            if expects_continue and self.head_check is not None:
                # The caller waits to be asked for its body: what the head decides, before.
                await self.head_check(scope)
            body = await self._read_body(receive)
        except BodyRefused as refusal:
            await self._refuse(scope, send, refusal)
            return
        replay = _Replay(body, receive)
        del body  # the replay holds it until the app reads it, then not at all
        await self.app(scope, replay, send)

    def _check_framing(
        self, content_type: str | None, length: str | None, *, encoded: bool
    ) -> None:
        """Refuse a body the head already shows unfit: its media type, coding or length."""
        limit = self.limits.max_body_bytes
        if not _json_media_type(content_type):
            raise BodyRefused(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                "request bodies must be application/json (UTF-8)",
            )
        if encoded:
            raise _content_coded()
        if length is not None:
            declared = length.strip()
            # ASCII digits only: str.isdigit() also takes "²", which int() then refuses.
            if not (declared.isascii() and declared.isdigit()):
                raise _bad_request("invalid Content-Length")
            # Over 18 digits (leading zeros aside: "0000…0350" is 350) is over any limit, and
            # int() refuses 4,300 digits and more.
            digits = declared.lstrip("0")
            if len(digits) > _MAX_LENGTH_DIGITS or int(digits or "0") > limit:
                raise _too_large(limit)

    async def _read_body(self, receive: Receive) -> bytes:
        limit = self.limits.max_body_bytes
        # One deadline for the whole body, not one per read: a caller dripping a byte now and
        # then would keep renewing a per-read timeout.
        timeout = self.limits.body_read_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                data = await _receive_bounded(receive, limit)
        except TimeoutError:
            raise _timed_out(timeout) from None
        if len(data) > _INLINE_CHECK_BYTES:
            # Parsing and walking grow with the body: keep big ones off the event loop.
            await asyncio.to_thread(self._check_json, data)
        elif data:
            self._check_json(data)
        return data

    def _check_json(self, body: bytes) -> None:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            # orjson stops at 1024 levels: JSON that nests deeper is refused as deep as it is.
            why = (
                too_deep(self.limits.max_json_depth)
                if exc.msg.startswith(_ORJSON_DEPTH_LIMIT)
                else _not_json(exc)
            )
            raise _invalid_json(why) from exc
        reason = check_json_shape(
            parsed,
            max_depth=self.limits.max_json_depth,
            max_string_chars=self.limits.max_json_string_chars,
            max_members=MAX_OBJECT_MEMBERS,
        )
        if reason is None and _repeats_a_key(body, parsed):
            reason = REPEATED_KEY
        if reason is not None:
            raise _invalid_json(reason)

    async def _refuse(self, scope: Scope, send: Send, refusal: BodyRefused) -> None:
        extensions = None
        if refusal.status == 422:  # noqa: PLR2004 - same shape as every other 422
            extensions = {"errors": [{"loc": ["body"], "msg": refusal.detail}]}
        # The unread rest of an oversized body is not drained: the connection is closed, and
        # the server reads on, dropping it, while it closes (`runtime.http_protocol`). After a
        # body read whole, as after a route's own 422, the next request may follow: closing
        # then would only cost the caller a new connection (and TLS handshake) per refusal.
        headers = list(refusal.headers)
        if not refusal.read_whole:
            headers.append((b"connection", b"close"))
        await send_problem(
            send,
            scope,
            status=refusal.status,
            type_=PROBLEM_BASE + refusal.slug,
            title=refusal.title,
            detail=refusal.detail,
            extensions=extensions,
            headers=headers,
        )
