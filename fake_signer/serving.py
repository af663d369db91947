"""The path every signing request takes: fault choice, capacity gate, latency, errors, answer.

Order, for one request whose body already passed the wire checks:

1. the fault: the `X-Fake-Signer-Fault` header if present (it does not use up a `_control`
   fault), else the next `_control` fault, if any (a signature fault only where one is signed);
2. a capacity slot: wait in FIFO order (`queue`) or answer 429 with `Retry-After: 1` (`reject`);
3. the simulated latency (plus a `delay` fault), awaited, never slept;
4. the random error rate (500), then the fault, else the real answer;
5. the slot is given back before a `slow-body` answer trickles out.

Latency and hangs are `await`s, so the event loop keeps serving other requests meanwhile; a
large `/issue` batch is signed in a worker thread for the same reason.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from fake_signer.behaviour import SIGNATURE_FAULTS, FaultSpec, FaultSpecError
from fake_signer.errors import KeyExpiredError, WireInputError
from fake_signer.settings import Overflow

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fake_signer.behaviour import Behaviour
    from fake_signer.stats import Stats

    #: Builds the 200 body for the fault chosen (it may raise input errors). A coroutine, so a
    #: large batch can be signed off the event loop.
    Producer = Callable[[FaultSpec | None], Awaitable[bytes]]

FAULT_HEADER = "X-Fake-Signer-Fault"
SLOW_BODY_CHUNKS = 10
JSON = "application/json"
#: Statuses answered without content, so without a Content-Type either (RFC 9110 §15.3.5 204,
#: §15.3.6 205, §15.4.5 304).
NO_CONTENT_STATUSES = frozenset({204, 205, 304})


def text_response(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    """A plain-text answer, the form the real signers use for errors.

    A message that quotes the request may hold characters UTF-8 cannot encode (lone surrogates);
    they are sent as backslash escapes rather than failing the answer with a 500.
    """
    return web.Response(
        status=status,
        body=text.encode("utf-8", "backslashreplace"),
        content_type="text/plain",
        charset="utf-8",
        headers=headers,
    )


@dataclass
class _Outcome:
    """What `/_stats` counts for one request: `cancelled` until the request gets further."""

    label: str = "cancelled"


@dataclass
class SigningPipeline:
    """Runs signing requests through the behaviour of one fake signer."""

    behaviour: Behaviour
    stats: Stats
    stopping: asyncio.Event

    async def run(
        self,
        request: web.Request,
        endpoint: str,
        produce: Producer,
        *,
        signs: bool = True,
    ) -> web.StreamResponse:
        """Answer one signing request; `produce` builds the 200 body.

        An endpoint that `signs` nothing (`/prepare_issue`) refuses a signature fault header
        and leaves a `_control` one pending for the next request that signs.
        """
        outcome = _Outcome()
        try:
            try:
                fault = self._fault(request, signs=signs)
            except FaultSpecError as exc:
                outcome.label = "bad_request"
                return text_response(400, f"bad {FAULT_HEADER}: {exc}")
            response, outcome.label = await self._gated(request, fault, produce, outcome)
            if fault is not None and fault.kind == "slow-body" and response.status == 200:  # noqa: PLR2004
                assert isinstance(response, web.Response)  # noqa: S101 - built by _gated
                return await self._trickle(request, response, fault.milliseconds)
            return response
        finally:
            self.stats.count(endpoint, outcome.label)

    def _fault(self, request: web.Request, *, signs: bool) -> FaultSpec | None:
        header = request.headers.get(FAULT_HEADER)
        if header is None:
            return self.behaviour.take_fault(signs=signs)
        fault = FaultSpec.parse(header)
        if not signs and fault.kind in SIGNATURE_FAULTS:
            raise FaultSpecError(f"{fault.kind} does not apply here: this endpoint signs nothing")
        return fault

    async def _gated(
        self,
        request: web.Request,
        fault: FaultSpec | None,
        produce: Producer,
        outcome: _Outcome,
    ) -> tuple[web.StreamResponse, str]:
        gate = self.behaviour.gate
        if self.behaviour.overflow is Overflow.REJECT:
            if not gate.try_acquire():
                return text_response(429, "signer busy", {"Retry-After": "1"}), "rejected"
        else:
            await gate.acquire()
        try:
            extra = fault.milliseconds if fault is not None and fault.kind == "delay" else 0.0
            delay = self.behaviour.latency_seconds(extra)
            if delay > 0:
                await asyncio.sleep(delay)
            if self.behaviour.random_error():
                return text_response(500, "simulated signer error"), "error"
            return await self._answer(request, fault, produce, outcome)
        finally:
            gate.release()

    async def _answer(
        self,
        request: web.Request,
        fault: FaultSpec | None,
        produce: Producer,
        outcome: _Outcome,
    ) -> tuple[web.StreamResponse, str]:
        kind = None if fault is None else fault.kind
        label = f"fault:{kind}"
        if fault is not None and kind == "status":
            return _status_answer(fault), label
        if kind in {"reset", "hang"}:
            # Applied from here on: these end in cancellation when the connection drops, so they
            # are labelled now (a client that left while queued or in the latency is `cancelled`).
            outcome.label = label
        if kind == "reset":
            _reset(request)
            # The transport is gone; aiohttp cancels this handler as the connection drops.
            await self.stopping.wait()
            return text_response(503, "stopping"), label
        if kind == "hang":
            await self.stopping.wait()
            return text_response(503, "stopping"), label
        if kind == "malformed":
            shape = fault is not None and fault.arg == "shape"
            body = b'{"unexpected": "shape"}' if shape else b'{"credential": "HC1:'
            return web.Response(body=body, content_type=JSON), label
        return await _produced(produce, fault, label)

    async def _trickle(
        self, request: web.Request, response: web.Response, milliseconds: float
    ) -> web.StreamResponse:
        body = response.body
        assert isinstance(body, bytes)  # noqa: S101 - _answer always sets bytes
        stream = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        stream.content_length = len(body)
        await stream.prepare(request)
        size = max(1, -(-len(body) // SLOW_BODY_CHUNKS))
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        pause = milliseconds / 1000 / max(1, len(chunks) - 1)
        for index, chunk in enumerate(chunks):
            if index:
                await asyncio.sleep(pause)
            await stream.write(chunk)
        await stream.write_eof()
        return stream


async def _produced(
    produce: Producer, fault: FaultSpec | None, label: str
) -> tuple[web.StreamResponse, str]:
    """The answer `produce` builds, labelled `label` for a fault, or the refusal it raised."""
    try:
        body = await produce(fault)
    except WireInputError as exc:
        return text_response(exc.status, str(exc)), "bad_request"
    except KeyExpiredError as exc:
        return text_response(exc.status, str(exc)), exc.outcome
    return web.Response(body=body, content_type=JSON), ("ok" if fault is None else label)


def _status_answer(fault: FaultSpec) -> web.Response:
    """The answer of a `status` fault: plain text, or bare for a status without content."""
    headers = {}
    if "retry-after" in fault.options:
        headers["Retry-After"] = fault.options["retry-after"]
    if fault.status in NO_CONTENT_STATUSES:
        return web.Response(status=fault.status, headers=headers)
    return text_response(fault.status, f"injected status {fault.status}", headers)


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), the rudest way a peer can go away."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
