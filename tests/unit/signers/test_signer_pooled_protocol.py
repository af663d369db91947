"""The aiohttp protocol of the signer transport, fed reads directly: what its parser refuses."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
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
