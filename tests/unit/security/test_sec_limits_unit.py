"""The body-limit middleware on raw ASGI messages, and the JSON shape check by property."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from signing_gateway.security import json_shape, limits
from signing_gateway.security.limits import RequestLimitsMiddleware, check_json_shape
from signing_gateway.security.settings import AuthSettings, LimitsSettings
from tests.support.gateway import make_settings


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/v1/dcc", "headers": headers, "state": {}}


async def _run(middleware: RequestLimitsMiddleware, scope, receive) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message):
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


async def test_streaming_body_is_cut_at_the_limit():
    """A chunked body is read only until it passes the limit; the app never runs."""
    pulled = 0
    app_called = False

    async def app(scope, receive, send):
        nonlocal app_called
        app_called = True

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b" " * 1024, "more_body": pulled < 1000}

    middleware = RequestLimitsMiddleware(app, limits=LimitsSettings(max_body_bytes=4096))
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    sent = await _run(middleware, _scope(headers), receive)
    assert sent[0]["status"] == 413
    assert pulled == 5
    assert not app_called


async def test_declared_length_is_refused_before_reading():
    """A Content-Length over the limit is refused without reading a single body message."""
    pulled = 0

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"", "more_body": False}

    async def app(scope, receive, send):
        raise AssertionError("the app must not run")

    middleware = RequestLimitsMiddleware(app, limits=LimitsSettings(max_body_bytes=10))
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    sent = await _run(middleware, _scope(headers), receive)
    assert sent[0]["status"] == 413
    assert pulled == 0


def _dripped(parts: list[bytes], *, every: float, then_stall: bool = False):
    """A `receive` handing out `parts` one per `every` seconds, then waiting for ever if asked."""

    async def receive():
        if not parts:
            assert then_stall
            await asyncio.Event().wait()
        await asyncio.sleep(every)
        body = parts.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(parts) or then_stall}

    return receive


async def test_a_body_that_stops_arriving_is_answered_408_and_closed():
    """Half a body and then nothing: 408 problem+json with Connection: close; the app never runs."""

    async def app(scope, receive, send):
        raise AssertionError("the app must not run")

    middleware = RequestLimitsMiddleware(app, limits=LimitsSettings(body_read_timeout_seconds=0.2))
    headers = [(b"content-type", b"application/json"), (b"content-length", b"1000")]
    started = time.monotonic()
    # Bounded here: without the deadline the read waits for ever, until the suite's own timeout.
    async with asyncio.timeout(5):
        sent = await _run(
            middleware, _scope(headers), _dripped([b'{"a": '], every=0, then_stall=True)
        )
    assert 0.2 <= time.monotonic() - started < 2
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert orjson.loads(sent[1]["body"])["type"].endswith("/body-timeout")


async def test_a_dripped_body_counts_against_one_deadline_for_the_whole_body():
    """Each part comes well within the timeout, the whole body does not: 408, not a renewal."""

    async def app(scope, receive, send):
        raise AssertionError("the app must not run")

    middleware = RequestLimitsMiddleware(app, limits=LimitsSettings(body_read_timeout_seconds=0.3))
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    sent = await _run(middleware, _scope(headers), _dripped([b" "] * 20, every=0.05))
    assert sent[0]["status"] == 408


async def test_a_slow_body_within_the_timeout_reaches_the_app():
    """A body arriving in parts, all within the timeout, is replayed whole to the app."""
    seen: list[bytes] = []

    async def app(scope, receive, send):
        seen.append((await receive())["body"])

    middleware = RequestLimitsMiddleware(app, limits=LimitsSettings(body_read_timeout_seconds=2))
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    parts = [b'{"a": ', b"[1, 2]", b"}"]
    sent = await _run(middleware, _scope(headers), _dripped(parts, every=0.1))
    assert sent == []
    assert seen == [b'{"a": [1, 2]}']


async def test_body_is_replayed_to_the_app():
    """The app receives exactly the body the client sent, in one message."""
    seen: list[dict[str, Any]] = []
    parts = [b'{"a": ', b"[1, 2]", b"}"]

    async def receive():
        body = parts.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(parts)}

    async def app(scope, receive, send):
        seen.append(await receive())

    middleware = RequestLimitsMiddleware(app, limits=LimitsSettings())
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    await _run(middleware, _scope(headers), receive)
    assert seen == [{"type": "http.request", "body": b'{"a": [1, 2]}', "more_body": False}]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=40,
)


#: Strings and keys that break the limits in each way: too long, a lone surrogate.
_texts = st.text(max_size=6) | st.sampled_from(["\ud800", "a\udfff", "x" * 9])
shaped_values = st.recursive(
    st.none() | st.booleans() | st.integers(-9, 9) | st.floats(allow_nan=False) | _texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_texts, children, max_size=5),
    max_leaves=60,
)


def _first_break(value, depth, *, max_depth, max_chars, max_members, unicode_text):
    """The reason the shape check gives, recursively: at a node, then its values from the last."""
    limits_ = {
        "max_depth": max_depth,
        "max_chars": max_chars,
        "max_members": max_members,
        "unicode_text": unicode_text,
    }
    if isinstance(value, str):
        return _text_break("string", value, max_chars=max_chars, unicode_text=unicode_text)
    if not isinstance(value, dict | list):
        return None
    if depth >= max_depth:
        return limits.too_deep(max_depth)
    own = _object_own_break(value, **limits_) if isinstance(value, dict) else None
    items = value.values() if isinstance(value, dict) else value
    found = (_first_break(item, depth + 1, **limits_) for item in reversed(list(items)))
    return own or next(filter(None, found), None)


def _object_own_break(value, *, max_depth, max_chars, max_members, unicode_text):
    """An object's own break: too many members, else its first key that breaks a limit."""
    del max_depth  # a key nests no deeper than its object
    if max_members is not None and len(value) > max_members:
        return f"an object has more than {max_members} members"
    found = (_text_break("key", k, max_chars=max_chars, unicode_text=unicode_text) for k in value)
    return next(filter(None, found), None)


def _text_break(kind, text, *, max_chars, unicode_text):
    if len(text) > max_chars:
        return f"a {kind} is longer than {max_chars} characters"
    if unicode_text and any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        return f"a {kind} holds a lone UTF-16 surrogate escape"
    return None


@pytest.mark.parametrize("walked", [0, 200], ids=["by-level", "walked"])
@settings(max_examples=300, deadline=None)
@given(
    value=shaped_values,
    max_depth=st.integers(1, 5),
    max_chars=st.integers(0, 8),
    max_members=st.none() | st.integers(0, 4),
    unicode_text=st.booleans(),
)
def test_shape_check_names_the_break_a_recursive_walk_meets_first(
    walked, *, value, max_depth, max_chars, max_members, unicode_text
):
    """Pin the reason given for a value breaking several limits, however its size is checked.

    A large value is looked at level by level (`walked` 0 makes every value large), and must
    be named as the node by node walk of a small one names it.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_shape, "_WALKED_NODES", walked)
        reason = check_json_shape(
            value,
            max_depth=max_depth,
            max_string_chars=max_chars,
            unicode_text=unicode_text,
            max_members=max_members,
        )
    assert reason == _first_break(
        value,
        0,
        max_depth=max_depth,
        max_chars=max_chars,
        max_members=max_members,
        unicode_text=unicode_text,
    )


@settings(max_examples=100, deadline=None)
@given(value=json_values)
async def test_middleware_passes_every_acceptable_document(value):
    """Any JSON within the limits reaches the app byte for byte."""
    raw = orjson.dumps(value)
    seen: list[bytes] = []

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    async def app(scope, receive, send):
        seen.append((await receive())["body"])

    limits = LimitsSettings(max_json_depth=64, max_json_string_chars=64)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    sent = await _run(RequestLimitsMiddleware(app, limits=limits), _scope(headers), receive)
    assert sent == []
    assert seen == [raw]
    assert json.loads(seen[0]) == value


async def test_once_the_app_has_the_body_the_middleware_no_longer_holds_it():
    """The replayed body is handed over, not kept: the app's own copy is the only one.

    The replay closure lives as long as the request; holding the body there doubled what
    every request waiting on its signer keeps (bench S4).
    """
    body = json.dumps({"padding": "x" * 8000}).encode()
    held: list[int] = []

    async def app(scope, receive, send):
        message = await receive()
        own = b"".join([message["body"], b""])  # what Starlette's Request.body() keeps
        del message
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(inclusive=True, filename_pattern=limits.__file__)]
        )
        held.append(sum(stat.size for stat in snapshot.statistics("filename")))
        assert own == body

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    middleware = RequestLimitsMiddleware(app, limits=LimitsSettings())
    tracemalloc.start()
    try:
        await _run(middleware, _scope(headers), receive)
    finally:
        tracemalloc.stop()
    assert held[0] < len(body) // 4, held


async def test_a_content_length_that_is_not_ascii_digits_or_absurdly_long_is_refused():
    """Unicode digits get 400 and a 5,000-digit length 413, both problem+json, never a 500."""

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def app(scope, receive, send):
        raise AssertionError("the app must not run")

    middleware = RequestLimitsMiddleware(app, limits=LimitsSettings(max_body_bytes=10))
    statuses = []
    for length in ("²".encode("latin-1"), b"9" * 5000):
        headers = [(b"content-type", b"application/json"), (b"content-length", length)]
        sent = await _run(middleware, _scope(headers), receive)
        assert dict(sent[0]["headers"])[b"content-type"] == b"application/problem+json"
        statuses.append(sent[0]["status"])
    assert statuses == [400, 413]


@pytest.mark.parametrize(("token_bytes", "refused"), [(8192, False), (31 * 1024, True)])
def test_the_head_limit_must_leave_room_for_the_largest_bearer_token(token_bytes, refused):
    """A token the verifier would take is never refused 431 for its size: such settings fail."""
    auth = AuthSettings(
        mode="jwt",
        jwks_file=Path("jwks.json"),
        audience="gateway",
        issuer="https://idp.test/",
        max_token_bytes=token_bytes,
    )
    if refused:
        with pytest.raises(ValidationError, match=r"limits\.max_header_bytes must be at least"):
            make_settings(auth=auth)
    else:
        assert make_settings(auth=auth).limits.max_header_bytes == 32 * 1024


def _one_message(body: bytes):
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _recording_app(seen: list[bytes]):
    async def app(scope, receive, send):
        seen.append((await receive())["body"])

    return app


async def _send_json(body: bytes) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Send `body` whole as JSON through default limits: what was answered, what the app got."""
    seen: list[bytes] = []
    middleware = RequestLimitsMiddleware(_recording_app(seen), limits=LimitsSettings())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return await _run(middleware, _scope(headers), _one_message(body)), seen


@pytest.mark.parametrize(
    ("content_type", "taken"),
    [
        (b"Application/JSON", True),
        (b"application/json ; Charset=UTF-8", True),
        (b'application/json; charset="utf-8"', True),
        (b"application/json; charset=utf8", True),
        (b'application/json; charset="UTF8"', True),
        (b"application/json; charset=utf-16", False),
        (b"application/json; charset=utf_8", False),
        (b"application/json-patch+json", False),
        (b"application/jsonl", False),
        (b"application/json; Charset=ISO-8859-1", False),
        (b"application/json; v=1; charset=latin-1", False),
    ],
)
async def test_json_media_types_are_read_as_rfc_9110_spells_them(
    content_type: bytes, taken: bool
) -> None:
    """Pin that type, subtype and parameter name are case-insensitive; the value may be quoted.

    And that the media type is matched whole, and a charset found wherever it stands: the
    others are 415.
    """
    seen: list[bytes] = []
    middleware = RequestLimitsMiddleware(_recording_app(seen), limits=LimitsSettings())
    headers = [(b"content-type", content_type), (b"content-length", b"2")]
    sent = await _run(middleware, _scope(headers), _one_message(b"{}"))
    assert (sent[0]["status"] if sent else 200) == (200 if taken else 415)
    assert seen == ([b"{}"] if taken else [])


@pytest.mark.parametrize("framing", ["declared", "chunked"])
async def test_a_body_of_exactly_the_limit_passes_and_one_byte_more_is_413(framing: str) -> None:
    """Pin the body limit's edge, declared or counted as it streams in: the limit is allowed."""
    limit = 64
    statuses = []
    for size in (limit, limit + 1):
        body = b'"' + b"x" * (size - 2) + b'"'
        seen: list[bytes] = []
        middleware = RequestLimitsMiddleware(
            _recording_app(seen), limits=LimitsSettings(max_body_bytes=limit)
        )
        framed = (
            (b"content-length", str(size).encode())
            if framing == "declared"
            else (b"transfer-encoding", b"chunked")
        )
        sent = await _run(
            middleware, _scope([(b"content-type", b"application/json"), framed]), _one_message(body)
        )
        statuses.append(sent[0]["status"] if sent else 200)
        assert seen == ([body] if size == limit else [])
    assert statuses == [200, 413]


async def test_a_caller_gone_half_way_through_its_body_never_reaches_the_app() -> None:
    """Pin that a disconnect before the body is whole ends the request: what came is not passed.

    The part that arrived may be JSON by itself (here it is).
    """
    messages = [
        {"type": "http.request", "body": b'{"a": 1}', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive():
        return messages.pop(0)

    seen: list[bytes] = []
    middleware = RequestLimitsMiddleware(_recording_app(seen), limits=LimitsSettings())
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    sent = await _run(middleware, _scope(headers), receive)
    assert seen == []
    assert sent[0]["status"] == 400


async def test_a_body_checked_off_the_loop_is_refused_as_one_checked_on_it() -> None:
    """Pin that a body over the inline size (16 KiB) still has its JSON shape checked."""
    nested: object = "x" * (20 * 1024)
    for _ in range(20):
        nested = [nested]
    body = orjson.dumps(nested)
    sent, seen = await _send_json(body)
    assert sent[0]["status"] == 422
    assert "deeper than 16" in orjson.loads(sent[1]["body"])["detail"]
    assert seen == []


async def test_a_body_over_the_inline_size_is_checked_in_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body of 16 KiB has its JSON checked on the event loop; one byte more, off it.

    Parsing and walking grow with the body: past the inline size they must not hold the loop.
    """
    threads: list[int] = []
    check = RequestLimitsMiddleware._check_json

    def noting_thread(self: RequestLimitsMiddleware, body: bytes) -> None:
        threads.append(threading.get_ident())
        check(self, body)

    monkeypatch.setattr(RequestLimitsMiddleware, "_check_json", noting_thread)
    for size in (16 * 1024, 16 * 1024 + 1):
        body = b"{}" + b" " * (size - 2)  # JSON allows whitespace after the value
        _, seen = await _send_json(body)
        assert seen == [body]
    loop_thread = threading.get_ident()
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread


async def test_a_chunked_body_is_bounded_however_the_coding_is_spelt() -> None:
    """Pin that `Transfer-Encoding: Chunked` (any case, RFC 9112) is counted and cut at a limit."""
    seen: list[bytes] = []
    middleware = RequestLimitsMiddleware(
        _recording_app(seen), limits=LimitsSettings(max_body_bytes=16)
    )
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"Chunked")]
    sent = await _run(middleware, _scope(headers), _one_message(b" " * 17))
    assert sent[0]["status"] == 413
    assert seen == []


@pytest.mark.parametrize(
    "spelt", [b"identity, identity", b"identity,", b", Identity", b"identity ,, identity", b""]
)
async def test_an_identity_content_coding_is_no_coding_however_the_list_is_spelt(
    spelt: bytes,
) -> None:
    """Pin that a `Content-Encoding` naming only `identity`, or nothing, passes, in any list form.

    RFC 9110 5.6.1: list elements are separated by commas with optional white space around
    them, and a recipient ignores empty elements (an empty list names no coding).
    """
    seen: list[bytes] = []
    middleware = RequestLimitsMiddleware(_recording_app(seen), limits=LimitsSettings())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-encoding", spelt),
        (b"content-length", b"2"),
    ]
    assert await _run(middleware, _scope(headers), _one_message(b"{}")) == []
    assert seen == [b"{}"]


async def test_a_content_coding_in_any_field_of_several_is_refused() -> None:
    """Pin that a later `Content-Encoding: identity` does not undo an earlier field's coding.

    RFC 9110 5.3: several fields of a name are one list, here `gzip, identity`: coded.
    """
    seen: list[bytes] = []
    middleware = RequestLimitsMiddleware(_recording_app(seen), limits=LimitsSettings())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-encoding", b"gzip"),
        (b"content-encoding", b"identity"),
        (b"content-length", b"2"),
    ]
    sent = await _run(middleware, _scope(headers), _one_message(b"{}"))
    assert sent[0]["status"] == 415
    assert (b"accept-encoding", b"identity") in sent[0]["headers"]
    assert seen == []


async def test_a_body_message_without_more_body_is_the_last() -> None:
    """Pin ASGI's default: a `http.request` message that leaves out `more_body` ends the body."""

    async def receive():
        return {"type": "http.request", "body": b"{}"}

    seen: list[bytes] = []
    middleware = RequestLimitsMiddleware(
        _recording_app(seen), limits=LimitsSettings(body_read_timeout_seconds=5)
    )
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    assert await asyncio.wait_for(_run(middleware, _scope(headers), receive), 2) == []
    assert seen == [b"{}"]


async def test_an_empty_chunked_body_reaches_the_app_as_no_body() -> None:
    """Pin that a chunked body of no bytes is not checked as JSON: the route says it is missing."""
    seen: list[bytes] = []
    middleware = RequestLimitsMiddleware(_recording_app(seen), limits=LimitsSettings())
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    assert await _run(middleware, _scope(headers), _one_message(b"")) == []
    assert seen == [b""]


@pytest.mark.parametrize(
    ("raw_path", "status"), [(b"/v1/dcc?next=%2Fhome", None), (b"/v1%2Fdcc?next=%2Fhome", 400)]
)
async def test_an_encoded_slash_counts_in_the_path_of_a_raw_path_with_a_query(
    raw_path: bytes, status: int | None
) -> None:
    """Pin that a server's `raw_path` holding the query string too is checked up to the `?`."""
    seen: list[bytes] = []
    middleware = RequestLimitsMiddleware(_recording_app(seen), limits=LimitsSettings())
    scope = {**_scope([(b"content-length", b"0")]), "raw_path": raw_path}
    sent = await _run(middleware, scope, _one_message(b""))
    assert (sent[0]["status"] if sent else None) == status
    assert seen == ([b""] if status is None else [])


async def test_the_first_framing_field_of_a_name_is_the_one_read() -> None:
    """Pin that a second Content-Length or Transfer-Encoding is not read, as Starlette reads them.

    The body is read by the first: a length within the limit, then chunked (and refused as
    too deep), never passed on unchecked by what the second says.
    """
    seen: list[bytes] = []
    limits_ = LimitsSettings(max_body_bytes=16, max_json_depth=1)
    middleware = RequestLimitsMiddleware(_recording_app(seen), limits=limits_)
    json_type = (b"content-type", b"application/json")
    lengths = [json_type, (b"content-length", b"2"), (b"content-length", b"99")]
    assert await _run(middleware, _scope(lengths), _one_message(b"{}")) == []
    codings = [json_type, (b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"identity")]
    sent = await _run(middleware, _scope(codings), _one_message(b"[[1]]"))
    assert sent[0]["status"] == 422
    assert seen == [b"{}"]


async def test_a_body_less_request_needs_no_content_type() -> None:
    """Pin that `Content-Length: 0` is no body: no 415, the app reads the request as sent."""
    seen: list[bytes] = []
    middleware = RequestLimitsMiddleware(_recording_app(seen), limits=LimitsSettings())
    sent = await _run(middleware, _scope([(b"content-length", b"0")]), _one_message(b""))
    assert sent == []
    assert seen == [b""]


def test_the_json_shape_limits_take_their_own_values() -> None:
    """Pin each bound's edge: `max_depth` levels and `max_string_chars` characters are taken."""
    limits_ = {"max_depth": 2, "max_string_chars": 3}
    assert check_json_shape({"abc": ["xyz"]}, **limits_) is None
    assert check_json_shape({"abc": [["x"]]}, **limits_) == limits.too_deep(2)
    assert check_json_shape({"abc": ["wxyz"]}, **limits_) == "a string is longer than 3 characters"
    assert check_json_shape({"abcd": []}, **limits_) == "a key is longer than 3 characters"


def test_an_object_of_more_members_than_allowed_is_refused_at_any_depth() -> None:
    """Pin the members bound's edge: `max_members` members are taken, one more is refused."""
    limits_ = {"max_depth": 4, "max_string_chars": 8, "max_members": 3}
    three = {"a": 1, "b": 2, "c": 3}
    assert check_json_shape({"x": [three]}, **limits_) is None
    refused = "an object has more than 3 members"
    assert check_json_shape({"x": [{**three, "d": 4}]}, **limits_) == refused
    assert check_json_shape({**three, "d": 4}, **limits_) == refused
    assert check_json_shape({**three, "d": 4}, max_depth=4, max_string_chars=8) is None


async def test_the_middleware_refuses_a_body_of_fifteen_thousand_keys() -> None:
    """A 169 KB body of 15,000 keys is a 422 naming the member bound; the app never sees it."""
    sent, seen = await _send_json(orjson.dumps({f"k{i}": 0 for i in range(15_000)}))
    assert sent[0]["status"] == 422
    detail = orjson.loads(sent[1]["body"])["detail"]
    assert detail == f"an object has more than {limits.MAX_OBJECT_MEMBERS} members"
    assert seen == []
    at_the_bound = orjson.dumps({"dcc": {f"k{i}": 0 for i in range(limits.MAX_OBJECT_MEMBERS)}})
    assert await _send_json(at_the_bound) == ([], [at_the_bound])


@pytest.mark.parametrize(
    ("body", "repeats"),
    [
        (b'{"a": 1, "a": 1}', True),
        (b'{"a": 1, "b": {"c": [], "c": null}}', True),
        (b'[1, {"a": 1, "b": 2, "a": 3}]', True),
        (b'{"dob": 1, "\\u0064ob": 2}', True),  # the same key once decoded
        (b'{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}', False),  # in different objects
        (b'{"a": "a", "b": ["a", "a"]}', False),  # a key's text as values
        (b'{"\\u00e9": 1, "e\\u0301": 2}', False),  # alike to a reader, not the same key
        (b" [] ", False),
        (b'{"a:": ":", "a:": 2}', True),  # colons in keys and strings
        (b'{":": ":", "b": [":", {"::": "a:b"}]}', False),
        (b'{"a:": 1, "a\\u003a": 2}', True),  # an escaped colon
        (b'{"a\\u003A": ":", "b": "\\u003a"}', False),
    ],
)
def test_repeats_a_key_finds_a_key_named_twice_within_one_object(body: bytes, repeats: bool):
    """A key twice within one object is found, at any depth; alike keys elsewhere are not."""
    assert limits.repeats_a_key(body, orjson.loads(body)) is repeats


class _Pairs(list[tuple[str, object]]):
    """A JSON object as its members in order, repeats kept."""


def _text(value: object) -> str:
    if isinstance(value, _Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{_text(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return json.dumps(value)


def _repeats(value: object) -> bool:
    if isinstance(value, _Pairs):
        keys = [k for k, _ in value]
        return len(set(keys)) < len(keys) or any(_repeats(v) for _, v in value)
    return isinstance(value, list) and any(_repeats(v) for v in value)


json_documents = st.recursive(
    st.none() | st.integers(-(2**53), 2**53) | st.sampled_from(["a", "b", "", ":", "a:"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(
            st.tuples(st.sampled_from(["a", "b", "ab", "", ":", "a:"]), children), max_size=4
        ).map(_Pairs)
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(value=json_documents)
def test_repeats_a_key_matches_a_reference(value):
    """Pin the repeat check against the members as written: true exactly when one repeats."""
    body = _text(value).encode()
    assert limits.repeats_a_key(body, orjson.loads(body)) is _repeats(value)


@pytest.mark.parametrize("pad", [0, 20 * 1024], ids=["on-the-loop", "off-the-loop"])
async def test_a_key_repeated_within_one_object_is_refused_unquoted(pad: int) -> None:
    """A body whose object names a key twice is a 422 that quotes none of it; the app never runs.

    Over 16 KiB it is checked in a worker thread, and refused there just the same.
    """
    body = b'{"pad": "%s", "dob": "1931-02-03", "dob": "Zyxwvutsrq"}' % (b"x" * pad)
    sent, seen = await _send_json(body)
    assert sent[0]["status"] == 422
    problem = orjson.loads(sent[1]["body"])
    assert problem["detail"] == "an object repeats a key"
    assert problem["errors"] == [{"loc": ["body"], "msg": "an object repeats a key"}]
    assert b"1931" not in sent[1]["body"]
    assert b"Zyxwvutsrq" not in sent[1]["body"]
    assert seen == []


@pytest.mark.parametrize("pad", [0, 20 * 1024], ids=["on-the-loop", "off-the-loop"])
@pytest.mark.parametrize("last", [b"1", b'"\\u003a"'], ids=["plain", "escaped-colon"])
async def test_a_repeated_key_whose_first_value_nests_past_the_parser_is_refused(
    pad: int, last: bytes
) -> None:
    """Pin that a key named again after a value 1,000 levels deep is a 422, not a 500.

    orjson reads the body (it stops at 1,024 levels) and keeps only the last value, which is
    within the depth limit; Python's parser, which reads a body that escapes a colon, gives up
    on the first one (RecursionError) and the request failed.
    """
    body = b'{"pad": "%s", "a": %s, "a": %s}' % (b"x" * pad, b"[" * 1000 + b"]" * 1000, last)
    sent, seen = await _send_json(body)
    assert sent[0]["status"] == 422
    assert orjson.loads(sent[1]["body"])["detail"] == "an object repeats a key"
    assert seen == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"a":' + b"9" * 5_000 + b"}", "at character 5"),
        (b'{"\xc3\xa9\xe2\x82\xac": [1, -1e400]}', "at character 11"),
        (b'{"a": 1e308}', None),
        (b'{"a": 1, "b" 2}', "the body is not JSON"),
        (b'{"a": 01}', "the body is not JSON"),
    ],
    ids=["5000-digits", "exponent-after-non-ascii", "largest-double", "syntax", "leading-zero"],
)
async def test_a_number_beyond_a_double_is_named_not_called_not_json(
    body: bytes, detail: str | None
) -> None:
    """Pin that valid JSON holding a number orjson cannot take says so, and where.

    RFC 8259 allows such a number and I-JSON advises against it: "not JSON" would send the
    caller looking for a syntax error. The place is counted in characters, not bytes.
    """
    sent, seen = await _send_json(body)
    if detail is None:
        assert seen == [body]
        return
    assert sent[0]["status"] == 422
    answer = orjson.loads(sent[1]["body"])["detail"]
    assert answer.endswith(detail)
    assert ("double" in answer) == (detail != "the body is not JSON")
    assert seen == []


@pytest.mark.parametrize(
    "body", [b'\xef\xbb\xbf{"a": 1}', b"\xef\xbb\xbf"], ids=["object", "alone"]
)
async def test_a_leading_byte_order_mark_is_named_not_called_not_json(body: bytes) -> None:
    """Pin that a body starting with a UTF-8 byte order mark is refused, saying so.

    RFC 8259 8.1 lets a parser ignore the mark, and forbids a sender to add it; the gateway
    refuses it, as it rewrites no body. The answer said "the body is not JSON" of a text whose
    only flaw is a mark no editor shows.
    """
    sent, seen = await _send_json(body)
    assert sent[0]["status"] == 422
    problem = orjson.loads(sent[1]["body"])
    assert problem["detail"].startswith("the body starts with a byte order mark (U+FEFF)")
    assert problem["errors"] == [{"loc": ["body"], "msg": problem["detail"]}]
    assert seen == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"a": 1, "a": [[[[1]]]]}', limits.too_deep(3)),
        (b'{"a": 1, "a": NaN}', "the body is not JSON"),
        (b'{"a": 1, "a": "\\ud800"}', "the body is not JSON"),
    ],
    ids=["too-deep", "nan", "lone-surrogate"],
)
async def test_repeats_are_looked_for_only_in_json_within_the_limits(
    monkeypatch: pytest.MonkeyPatch, body: bytes, detail: str
) -> None:
    """Pin that what orjson or the shape check refuses never reaches Python's parser."""
    looked_at: list[bytes] = []
    monkeypatch.setattr(limits, "repeats_a_key", looked_at.append)
    middleware = RequestLimitsMiddleware(
        _recording_app([]), limits=LimitsSettings(max_json_depth=3)
    )
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    sent = await _run(middleware, _scope(headers), _one_message(body))
    assert orjson.loads(sent[1]["body"])["detail"] == detail
    assert looked_at == []
