"""`serve --accept-batch`: asyncio accepts a burst in slices, the kernel still queues it all."""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.contract.gateway.gateway_process import gateway_env, running_gateway_process

CONNECTIONS = 100


def _connections_completed_while_stopped(args: tuple[str, ...], eu_url: str, dom_url: str) -> int:
    """Stop the gateway (it accepts nothing), open 100 connections, count the handshakes done.

    The kernel completes a handshake only while the listening socket's queue has room, so the
    count shows the queue length the gateway really listens with.
    """
    with running_gateway_process(gateway_env(eu_url, dom_url), *args) as gateway:
        port = urlsplit(gateway.base_url).port
        os.kill(gateway.process.pid, signal.SIGSTOP)
        sockets: list[socket.socket] = []
        try:
            for _ in range(CONNECTIONS):
                sock = socket.socket()
                sock.setblocking(False)
                sockets.append(sock)
                sock.connect_ex(("127.0.0.1", port))
            deadline = time.monotonic() + 0.5
            done: set[socket.socket] = set()
            while time.monotonic() < deadline and len(done) < CONNECTIONS:
                _, writable, _ = select.select([], [s for s in sockets if s not in done], [], 0.05)
                done.update(
                    s for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                )
            return len(done)
        finally:
            for sock in sockets:
                sock.close()
            os.kill(gateway.process.pid, signal.SIGCONT)


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_small_accept_batch_keeps_the_full_kernel_queue(eu_signer, domestic_signer):
    """--backlog 256 --accept-batch 4: all 100 handshakes complete while the gateway is stopped.

    Listening with 4, what asyncio alone would have set, completes only a handful.
    """
    urls = (eu_signer.base_url, domestic_signer.base_url)
    assert (
        _connections_completed_while_stopped(("--backlog", "256", "--accept-batch", "4"), *urls)
        == CONNECTIONS
    )
    assert (
        _connections_completed_while_stopped(("--backlog", "4", "--accept-batch", "4"), *urls) <= 10
    )
