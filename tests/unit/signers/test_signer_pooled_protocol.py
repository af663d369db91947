"""The aiohttp protocol of the signer transport, fed reads directly: what its parser refuses."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiohttp.client_proto import ResponseHandler
from aiohttp.helpers import TimerNoop
from aiohttp.http_exceptions import HttpProcessingError

from signing_gateway.signers.transport import _PooledProtocol

#: Answers aiohttp's parser refuses, each with the text its refusal names.
REFUSED = [
    (b"XTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", "XTTP/1.1 200 OK"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "Content-Length: x"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n0\r\n\r\n", "zz"),
]


@pytest.mark.parametrize(("answer", "named"), REFUSED)
async def test_a_read_whose_first_part_is_refused_is_refused_once_for_what_it_holds(answer, named):
    """A read's first part refused: its last byte is not fed to the failed parser after it.

    The whole answer comes in one read, before the call waits on it (a signer answering while
    the request is still being written): the call reads the refusal kept for it, which named
    the last byte when that was fed too.
    """
    protocol = _PooledProtocol(loop=asyncio.get_running_loop())
    transport = mock.Mock(spec=asyncio.Transport)
    transport.is_closing.return_value = False
    protocol.connection_made(transport)
    protocol.set_response_params()
    refusals = []
    set_exception = protocol.set_exception

    def counted(exc, *cause):
        refusals.append(exc)
        set_exception(exc, *cause)

    protocol.set_exception = counted  # type: ignore[method-assign]
    protocol.data_received(answer)

    assert len(refusals) == 1, f"refused {len(refusals)} times: {refusals}"
    with pytest.raises(HttpProcessingError) as refused:
        await protocol.read()
    assert named in str(refused.value)
    transport.close.assert_called()


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
CHUNKED_ANSWER = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </keys>\r\n\r\n"


def _protocol_awaiting_an_answer() -> tuple[_PooledProtocol, mock.Mock]:
    """A protocol on a mock transport, set up for the answer to a call, as aiohttp does it."""
    protocol = _PooledProtocol(loop=asyncio.get_running_loop())
    transport = mock.Mock(spec=asyncio.Transport)
    transport.is_closing.return_value = False
    protocol.connection_made(transport)
    protocol.set_response_params()
    return protocol, transport


@pytest.mark.parametrize(
    "reads",
    [
        [ANSWER + b"GARBAGE\r\n"],
        [CHUNKED_ANSWER + b"GARBAGE\r\n"],
        [EARLY_HINTS + ANSWER + b"GARBAGE\r\n"],
        [ANSWER[:20], ANSWER[20:] + b"GARBAGE\r\n"],
        [EARLY_HINTS[:9], EARLY_HINTS[9:] + ANSWER[:30], ANSWER[30:] + b"\x00\x01"],
    ],
    ids=["one-read", "chunked", "after-interim", "head-split", "interim-split"],
)
async def test_a_whole_answer_followed_by_refused_bytes_is_the_answer(reads):
    """Bytes the parser refuses, past a whole answer in the same read, do not replace it.

    aiohttp's parser dropped the answer it had read with the refusal: the call failed (a lost
    connection, retried), where httpcore read the answer. The connection is still closed.
    """
    protocol, transport = _protocol_awaiting_an_answer()
    for read in reads:
        protocol.data_received(read)

    message, body = await protocol.read()
    while message.code == 103:  # an interim answer queued before: aiohttp reads past it
        message, body = await protocol.read()
    assert (message.code, await body.read()) == (200, b"{}")
    transport.close.assert_called()
    assert protocol.heard
    assert protocol.should_close


#: The options aiohttp's client gives `set_response_params` for a POST, its timer aside.
CALL_OPTIONS = {
    "skip_payload": False,
    "read_until_eof": True,
    "auto_decompress": False,
    "read_timeout": None,
    "read_bufsize": 2**16,
    "timeout_ceil_threshold": 5,
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 128,
}


async def test_calls_with_the_same_options_share_one_kept_copy_without_their_timer():
    """Pin that a connection keeps no per-call copy of the parser's options, nor the timer.

    The options are kept for reading an answer again (`_answer_before`). Each call's own
    mapping (~270 B, with that call's timer) was held as long as its connection, so once per
    call in flight at a signer (bench S4). The answer followed by refused bytes is still read,
    with the options as aiohttp gives them.
    """
    loop = asyncio.get_running_loop()
    protocols = [_PooledProtocol(loop=loop) for _ in range(2)]
    for protocol in protocols:
        transport = mock.Mock(spec=asyncio.Transport)
        transport.is_closing.return_value = False
        protocol.connection_made(transport)
        protocol.set_response_params(timer=TimerNoop(), **CALL_OPTIONS)
    first, second = protocols
    assert first._params is second._params
    assert first._params == CALL_OPTIONS
    first.data_received(ANSWER + b"GARBAGE\r\n")
    message, body = await first.read()
    assert (message.code, await body.read()) == (200, b"{}")


def _parsers_made() -> mock._patch[mock.MagicMock]:
    """Count the parsers made for the protocol (aiohttp makes one in `set_response_params`)."""
    return mock.patch.object(
        ResponseHandler,
        "set_response_params",
        autospec=True,
        side_effect=ResponseHandler.set_response_params,
    )


async def test_a_refused_read_that_ends_no_head_is_not_read_again():
    """A head refused before it ends (a line too long) leaves no answer to find: none is sought.

    Each refused read of a long head was read again some 21 times, up to 1 MB each time.
    """
    protocol, _ = _protocol_awaiting_an_answer()
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 8000) for i in range(8))
    with _parsers_made() as made:
        for start in range(0, len(head), 16384):
            protocol.data_received(head[start : start + 16384])
        protocol.data_received(b"X-Long: " + b"a" * 9000)
    assert made.call_count == 0
    with pytest.raises(HttpProcessingError):
        await protocol.read()


async def test_a_whole_answer_after_a_long_head_is_found_by_halving_the_refused_read_only():
    """The answer owed ends in the refused read: only that read is halved, not all that came."""
    protocol, _ = _protocol_awaiting_an_answer()
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 8000) for i in range(8))
    fed = b"Content-Length: 2\r\n\r\n{}GARBAGE\r\n"
    with _parsers_made() as made:
        protocol.data_received(head)
        protocol.data_received(fed)
    message, body = await protocol.read()
    assert (message.code, await body.read()) == (200, b"{}")
    # Halving the 31 bytes refused (the last is fed alone) takes 5 reads, then one to keep.
    assert made.call_count <= len(fed).bit_length() + 1
