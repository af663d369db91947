"""The drain's order and time bounds, and what each signal does to `GracefulServer`.

tests/contract/resilience/test_resilience_shutdown.py stops real processes; here the
controller runs on held requests and the server's signal handling on a recording loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn

from signing_gateway.observability.logging import _drop_server_copies
from signing_gateway.resilience.drain import DrainController, DrainMiddleware
from signing_gateway.resilience.shutdown import GracefulServer, WorkerServer, served_drain
from signing_gateway.runtime import worker_signals
from signing_gateway.runtime.http_protocol import GatewayHttpProtocol
from tests.support.polling import until


@dataclass
class _Watcher:
    draining: bool = False


def test_draining_is_shown_to_every_watcher_from_the_start_or_on_attaching() -> None:
    """The readiness monitor follows the controller, attached before or after the drain began."""
    controller = DrainController(drain_timeout=1, cancel_grace=1)
    before = _Watcher()
    controller.attach(before)
    assert (controller.draining, before.draining) == (False, False)
    controller.begin()
    after = _Watcher()
    controller.attach(after)
    assert (controller.draining, before.draining, after.draining) == (True, True, True)


async def _request(controller: DrainController, *, lasts: float, ends_late: float = 0.0) -> None:
    """A request in flight for `lasts` s; cancelled by the drain, it takes `ends_late` s more."""
    scope = asyncio.timeout(None)
    controller.track(scope)
    try:
        async with scope:
            await asyncio.sleep(lasts)
    except TimeoutError:
        await asyncio.sleep(ends_late)  # answering its 503, or stuck in a finally
    finally:
        controller.untrack(scope)


async def _drain_one(
    drain_timeout: float, cancel_grace: float, *, lasts: float, ends_late: float = 0.0
) -> tuple[int, float, DrainController, asyncio.Task[None]]:
    """Drain a controller with one request in flight: what it returned, how long it took."""
    controller = DrainController(drain_timeout=drain_timeout, cancel_grace=cancel_grace)
    request = asyncio.create_task(_request(controller, lasts=lasts, ends_late=ends_late))
    await asyncio.sleep(0)  # the request is in flight
    loop = asyncio.get_running_loop()
    started = loop.time()
    left = await controller.drain()
    return left, loop.time() - started, controller, request


async def test_the_drain_ends_as_soon_as_the_last_request_does() -> None:
    """Nothing left in flight ends the drain at once, not at its timeout."""
    left, took, _, request = await _drain_one(5, 5, lasts=0.1)
    assert (left, request.done()) == (0, True)
    assert took < 1.0
    idle = DrainController(drain_timeout=5, cancel_grace=5)
    async with asyncio.timeout(0.5):  # nothing in flight at all: no wait
        assert await idle.drain() == 0


async def test_the_drain_waits_for_every_request_not_the_first_to_end() -> None:
    """One of two requests ending leaves the drain waiting for the other: nothing cancelled."""
    controller = DrainController(drain_timeout=5, cancel_grace=5)
    requests = [asyncio.create_task(_request(controller, lasts=lasts)) for lasts in (0.05, 0.3)]
    await asyncio.sleep(0)  # both in flight
    assert await controller.drain() == 0
    assert all(request.done() and not request.cancelled() for request in requests)


async def test_requests_are_cancelled_at_the_drain_timeout() -> None:
    """A request that would run on is cancelled at `drain_timeout`, the cancel grace unused."""
    left, took, controller, request = await _drain_one(0.1, 5, lasts=30)
    assert (left, controller.in_flight, request.done()) == (1, 0, True)
    assert 0.09 < took < 1.0


async def test_cancelled_requests_get_the_cancel_grace_to_end() -> None:
    """The drain waits for cancelled requests to end, within `cancel_grace`, not longer."""
    left, took, controller, _ = await _drain_one(0.05, 2, lasts=30, ends_late=0.3)
    assert (left, controller.in_flight) == (1, 0)
    assert 0.3 < took < 1.5
    left, took, stuck, request = await _drain_one(0.05, 0.2, lasts=30, ends_late=30)
    assert (left, stuck.in_flight) == (1, 1)
    assert 0.2 < took < 1.0
    request.cancel()


@pytest.mark.parametrize(
    ("second_signal", "why"), [(False, "drain timeout"), (True, "second signal")]
)
async def test_the_cancellation_is_logged_with_its_reason(
    caplog: pytest.LogCaptureFixture, second_signal: bool, why: str
) -> None:
    """The log says why requests were cancelled, and how many."""
    caplog.set_level(logging.INFO, logger="signing_gateway.shutdown")
    controller = DrainController(drain_timeout=0.05, cancel_grace=1)
    asyncio.create_task(_request(controller, lasts=30))  # noqa: RUF006
    await asyncio.sleep(0)
    if second_signal:
        controller.stop_now()
    await controller.drain()
    records = [(r.levelname, r.getMessage(), getattr(r, "in_flight", None)) for r in caplog.records]
    assert records == [("INFO", "draining", 1), ("WARNING", f"{why}: cancelling requests", 1)]


class _RecordingLoop:
    """Stands in for the server's loop: records what a signal handler schedules on it."""

    def __init__(self) -> None:
        self.scheduled: list[Callable[[], object]] = []

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        self.scheduled.append(callback)


async def _app(_scope: object, _receive: object, _send: object) -> None:  # pragma: no cover
    raise AssertionError("never called")


def _server(**options: object) -> GracefulServer:
    config = uvicorn.Config(_app, port=0, log_config=None)
    controller = DrainController(drain_timeout=1, cancel_grace=1)
    return GracefulServer(config, controller=controller, **options)  # type: ignore[arg-type]


def _serving(server: GracefulServer) -> _RecordingLoop:
    """Have `server` look started, on a recording loop; that loop."""
    server.started = True
    loop = server._loop = _RecordingLoop()  # type: ignore[assignment]
    return loop


def test_first_signal_drains_second_stops_now_third_sigint_forces_the_exit() -> None:
    """SIGTERM: drain (exit 0 after it); again: cut it short and end by it; SIGINT: force."""
    server = _server()
    loop = _serving(server)
    server.handle_exit(signal.SIGTERM, None)
    assert loop.scheduled == [server._start_drain]
    assert (server.should_exit, server._captured_signals) == (False, [])
    server.handle_exit(signal.SIGTERM, None)
    assert loop.scheduled == [server._start_drain, server.controller.stop_now]
    assert (server.should_exit, server._captured_signals) == (True, [signal.SIGTERM])
    server.handle_exit(signal.SIGINT, None)
    assert len(loop.scheduled) == 2
    assert server.force_exit is True


def test_a_signal_once_the_server_is_stopping_does_not_drain() -> None:
    """Stopping already (its drain done, or uvicorn's own exit): no drain, no cut, as uvicorn."""
    server = _server()
    loop = _serving(server)
    server.should_exit = True
    server.handle_exit(signal.SIGTERM, None)
    assert loop.scheduled == []
    assert server._captured_signals == [signal.SIGTERM]
    drained = _server()
    loop = _serving(drained)
    drained.handle_exit(signal.SIGTERM, None)
    drained.should_exit = True  # the drain has ended
    drained.handle_exit(signal.SIGTERM, None)
    assert loop.scheduled == [drained._start_drain]


def _worker_server() -> WorkerServer:
    """A `serve --workers N` worker's server, its app's drain loaded (as it starts)."""
    server = WorkerServer(uvicorn.Config(_app, port=0, log_config=None))
    server._controller = DrainController(drain_timeout=1, cancel_grace=1)
    return server


def test_a_workers_server_leaves_the_first_ctrl_c_to_its_supervisor() -> None:
    """A `serve --workers N` worker: SIGINT before the drain does nothing; SIGTERM drains.

    The supervisor takes a Ctrl-C and sends each worker SIGTERM: a worker draining on the
    Ctrl-C itself would take that SIGTERM for a second signal and cut its drain short. Once
    it drains, a Ctrl-C stops it now, and a third one forces the exit, as with one process.
    """
    server = _worker_server()
    loop = _serving(server)
    server.handle_exit(signal.SIGINT, None)
    assert loop.scheduled == []
    assert (server.should_exit, server._captured_signals) == (False, [])
    server.handle_exit(signal.SIGTERM, None)
    assert loop.scheduled == [server._start_drain]
    assert (server.should_exit, server._captured_signals) == (False, [])
    server.handle_exit(signal.SIGINT, None)
    assert loop.scheduled == [server._start_drain, server.controller.stop_now]
    assert (server.should_exit, server._captured_signals) == (True, [signal.SIGINT])
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit is True


def _take(server: WorkerServer, signals: list[int]) -> None:
    """Raise each of `signals` in turn in this process, taken by `server`'s signal capture.

    What it stopped by is forgotten before the capture ends, which would raise it again here.
    """
    with server.capture_signals():
        for signum in signals:
            signal.raise_signal(signum)
        server._captured_signals.clear()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # To the whole process group: each reaches the worker before the supervisor's.
        ([signal.SIGTERM, worker_signals.DRAIN], [signal.SIGTERM, worker_signals.STOP_NOW]),
        ([signal.SIGTERM], [signal.SIGTERM, worker_signals.DRAIN, worker_signals.STOP_NOW]),
        ([signal.SIGTERM, worker_signals.DRAIN], [worker_signals.STOP_NOW, signal.SIGTERM]),
        # To the supervisor alone.
        ([worker_signals.DRAIN], [worker_signals.STOP_NOW]),
    ],
    ids=["group", "group, the second at once", "group, the supervisor's stop first", "alone"],
)
def test_a_workers_server_drains_and_stops_now_once_whoever_signals(
    first: list[int], second: list[int]
) -> None:
    """The supervisor's drain and stop now are a worker's first and second SIGTERM, once each.

    A SIGTERM to the whole process group reaches each worker from its sender and is passed on
    by the supervisor too: one drain, then one stop now, not a stop now at the first.
    """
    server = _worker_server()
    loop = _serving(server)
    _take(server, first)
    assert loop.scheduled == [server._start_drain]
    assert server.should_exit is False
    _take(server, second)
    assert loop.scheduled == [server._start_drain, server.controller.stop_now]
    assert (server.should_exit, server.force_exit) == (True, False)


def test_the_supervisors_stop_now_drains_a_worker_that_had_no_drain_yet() -> None:
    """Stop now to a worker not draining drains it, then stops it now; a drain then: nothing.

    As when the supervisor's drain and stop now are taken in the other order.
    """
    server = _worker_server()
    loop = _serving(server)
    _take(server, [worker_signals.STOP_NOW, worker_signals.DRAIN])
    assert loop.scheduled == [server._start_drain, server.controller.stop_now]
    assert (server.should_exit, server.force_exit) == (True, False)


def test_the_supervisors_stop_now_after_a_second_ctrl_c_changes_nothing() -> None:
    """A worker stopped now by a second Ctrl-C: the supervisor's stop now adds nothing.

    It is not a third signal, which would force the exit (the app's shutdown skipped).
    """
    server = _worker_server()
    loop = _serving(server)
    with server.capture_signals():
        signal.raise_signal(worker_signals.DRAIN)
        server.handle_exit(signal.SIGINT, None)  # the terminal's, to every process
        signal.raise_signal(worker_signals.STOP_NOW)
        captured = server._captured_signals[:]
        server._captured_signals.clear()
    assert loop.scheduled == [server._start_drain, server.controller.stop_now]
    assert (captured, server.force_exit) == ([signal.SIGINT], False)


@pytest.mark.parametrize(
    ("make_server", "first"),
    [
        (_server, [signal.SIGINT]),
        # A worker leaves the first Ctrl-C to its supervisor, whose SIGTERM starts the drain.
        (_worker_server, [signal.SIGINT, signal.SIGTERM]),
    ],
    ids=["one process", "a worker"],
)
def test_a_second_ctrl_c_after_the_drain_ended_does_not_force_the_exit(
    make_server: Callable[[], GracefulServer], first: list[signal.Signals]
) -> None:
    """Ctrl-C pressed twice, the drain with nothing in flight over in between: not forced.

    uvicorn took that SIGINT for a third signal, as its exit had begun, and forced the exit:
    the app's shutdown (the audit file's last records) was skipped, with a traceback of the
    cancelled lifespan. It is the second signal: the process ends by it once shut down. A
    third Ctrl-C forces the exit.
    """
    server = make_server()
    loop = _serving(server)
    for signum in first:
        server.handle_exit(signum, None)
    server.should_exit = True  # the drain over, uvicorn's shutdown begun
    server.handle_exit(signal.SIGINT, None)
    assert loop.scheduled == [server._start_drain]
    assert (server.force_exit, server._captured_signals) == (False, [signal.SIGINT])
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit is True


class _Wrapper:
    """Stands in for one of uvicorn's wrappers of the app it loads (its proxy headers')."""

    def __init__(self, app: object) -> None:
        self.app = app


#: The app `test_a_server_given_no_drain_takes_the_one_of_the_app_it_loads` names by its import
#: string, as a worker's configuration names the gateway's.
_served_app: object = None


async def test_a_server_given_no_drain_takes_the_one_of_the_app_it_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker's server: the app is loaded as it starts, from an import string; so its drain.

    Wrapped by uvicorn or not, the app's `state.drain` is the one; an app with none is refused.
    """
    drain = DrainController(drain_timeout=1, cancel_grace=1)
    app = SimpleNamespace(state=SimpleNamespace(drain=drain))
    assert served_drain(app) is drain
    assert served_drain(_Wrapper(_Wrapper(app))) is drain
    with pytest.raises(TypeError, match="has no drain"):
        served_drain(_Wrapper(SimpleNamespace(state=SimpleNamespace())))
    with pytest.raises(TypeError, match="has no drain"):  # something else by that name
        served_drain(_Wrapper(SimpleNamespace(state=SimpleNamespace(drain=object()))))
    monkeypatch.setitem(globals(), "_served_app", _Wrapper(app))
    config = uvicorn.Config(
        f"{__name__}:_served_app",
        host="127.0.0.1",
        port=0,
        log_config=None,
        lifespan="off",
        interface="asgi3",
    )
    server = WorkerServer(config)
    with pytest.raises(RuntimeError, match="known once the server has loaded the app"):
        _ = server.controller
    serving = asyncio.create_task(server.serve())
    await until(lambda: server.started or serving.done())
    assert not serving.done(), serving.exception()
    assert server.controller is drain
    server.should_exit = True
    async with asyncio.timeout(5):
        await serving


def test_a_signal_during_the_start_up_stops_it_and_ends_by_the_signal() -> None:
    """Pin that a signal while the app starts schedules the start-up's stop, not a drain.

    Nothing is in flight yet; the signal is kept, for the exit status, and a second one only
    asks again.
    """
    server = _server()
    loop = server._loop = _RecordingLoop()  # type: ignore[assignment]
    server.handle_exit(signal.SIGTERM, None)
    assert loop.scheduled == [server._stop_start_up]
    assert (server.should_exit, server._captured_signals) == (True, [signal.SIGTERM])
    server.handle_exit(signal.SIGINT, None)
    assert loop.scheduled == [server._stop_start_up, server._stop_start_up]
    assert server._drain_requested is False


async def _stop_leaves_serving(server: GracefulServer) -> None:
    """`_stop_start_up` on `server`, serving still: the serving task is not cancelled."""
    server._serving = running = asyncio.create_task(asyncio.sleep(30))
    server._stop_start_up()
    await asyncio.sleep(0)
    assert not running.done()
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


async def test_stopping_the_start_up_cancels_only_a_start_up_still_running() -> None:
    """Pin that the stop cancels the serving task while the app starts, and nothing after.

    Once the app's start-up is done (the listeners being opened) or the server started,
    uvicorn's own exit ends it.
    """
    server = _server()
    server._serving = asyncio.create_task(asyncio.sleep(30))
    server._stop_start_up()
    with pytest.raises(asyncio.CancelledError):
        await server._serving
    started = _server()
    started.started = True
    await _stop_leaves_serving(started)
    app_started = _server()
    startup_event = asyncio.Event()
    startup_event.set()
    app_started.lifespan = SimpleNamespace(startup_event=startup_event)  # type: ignore[assignment]
    await _stop_leaves_serving(app_started)


def test_a_signal_before_the_loop_runs_stops_as_uvicorn_does() -> None:
    """No loop to drain on yet: uvicorn's own handling, the signal kept to end the process."""
    server = _server()
    server.handle_exit(signal.SIGTERM, None)
    assert (server.should_exit, server._captured_signals) == (True, [signal.SIGTERM])


async def test_the_server_exits_once_the_drain_ends_even_if_it_failed() -> None:
    """The drain's end, or its failure, is what lets uvicorn's shutdown run."""
    server = _server()
    await server._drain()
    assert server.should_exit is True
    failing = _server()

    async def broken() -> int:
        raise RuntimeError("a bug")

    failing.controller.drain = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await failing._drain()
    assert failing.should_exit is True


class _UnreadTransport:
    """A connection's transport holding an answer its caller does not take."""

    def __init__(self) -> None:
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return 0 if self.aborted else 64 * 1024

    def abort(self) -> None:
        self.aborted = True


class _Connection:
    def __init__(self, transport: _UnreadTransport) -> None:
        self.transport = transport


class _SlowlyTakenTransport(_UnreadTransport):
    """An answer its caller takes, slowly: gone once `taken` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.taken = asyncio.Event()

    def get_write_buffer_size(self) -> int:
        return 0 if self.taken.is_set() else super().get_write_buffer_size()


async def test_an_answer_taken_within_the_drain_timeout_is_not_cut_off() -> None:
    """Pin that unread answers have until `drain_timeout` after the drain began, not less."""
    server = _server()  # drain_timeout 1 s, nothing in flight: the drain itself ends at once
    transport = _SlowlyTakenTransport()
    server.server_state.connections.add(_Connection(transport))  # type: ignore[arg-type]
    asyncio.get_running_loop().call_later(0.2, transport.taken.set)
    async with asyncio.timeout(2):
        await server._drain()
    assert (transport.taken.is_set(), transport.aborted) == (True, False)


@pytest.mark.parametrize("when", ["before the wait", "while waiting"])
async def test_a_second_signal_ends_the_wait_for_unread_answers_at_once(when: str) -> None:
    """Stopping now cuts off a caller that stopped reading at once, not at the drain's end."""
    server = _server()
    transport = _UnreadTransport()
    server.server_state.connections.add(_Connection(transport))  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    if when == "before the wait":
        server.controller.stop_now()
    ending = asyncio.create_task(server._end_unread_answers(loop.time() + 30))
    if when == "while waiting":
        await asyncio.sleep(0)  # it waits for the answer to go
        assert not ending.done()
        server.controller.stop_now()
    async with asyncio.timeout(1):
        await ending
    assert transport.aborted


@pytest.mark.parametrize(
    ("captured", "status"), [([], None), ([signal.SIGINT, signal.SIGTERM], 128 + signal.SIGTERM)]
)
def test_a_server_stopped_by_a_signal_exits_with_128_plus_its_number(
    captured: list[int], status: int | None
) -> None:
    """As PID 1, where raising the signal again does not end the process: the shell's status."""

    class Stopped(GracefulServer):
        async def serve(self, sockets: object = None) -> None:  # noqa: ARG002
            self._captured_signals.extend(captured)

    server = Stopped(
        uvicorn.Config(_app, port=0, log_config=None),
        controller=DrainController(drain_timeout=1, cancel_grace=1),
        loop_factory=asyncio.new_event_loop,
    )
    if status is None:
        server.run()
        return
    with pytest.raises(SystemExit) as ended:
        server.run()
    assert ended.value.code == status


async def test_the_drain_waits_for_requests_drain_timeout_and_no_longer() -> None:
    """Pin that the wait for in-flight requests ends `drain_timeout` after the drain began."""
    controller = DrainController(drain_timeout=30, cancel_grace=1)
    request = asyncio.create_task(_request(controller, lasts=300))
    await asyncio.sleep(0)  # the request is in flight
    loop = asyncio.get_running_loop()
    began = loop.time()
    drain = asyncio.create_task(controller.drain())
    await asyncio.sleep(0)  # the drain waits
    waiting = controller._waiting
    assert waiting is not None
    when = waiting.when()
    assert when is not None
    assert began + 30 <= when <= loop.time() + 30
    controller.stop_now()
    assert await drain == 1
    await request


async def test_the_probe_port_closes_with_the_main_port() -> None:
    """Pin that uvicorn's shutdown closes the probe listener as it closes its own.

    Left open, the probe port went on taking connections through the shutdown.
    """
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=0, http=GatewayHttpProtocol, log_config=None, lifespan="off"
    )
    controller = DrainController(drain_timeout=1, cancel_grace=1)
    server = GracefulServer(config, controller=controller, probe_port=0)
    serving = asyncio.create_task(server.serve())
    await until(lambda: len(getattr(server, "servers", ())) == 2)  # the main one, the probes'
    probes = server.servers[1]
    assert probes.is_serving()
    server.should_exit = True
    async with asyncio.timeout(5):
        await serving
    assert not probes.is_serving()


async def test_a_probe_port_that_cannot_be_bound_ends_the_start_up_with_status_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As uvicorn ends when its own port cannot be bound: the reason logged, status 1."""
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=0, http=GatewayHttpProtocol, log_config=None, lifespan="off"
    )
    controller = DrainController(drain_timeout=1, cancel_grace=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = GracefulServer(config, controller=controller, probe_port=port)
        config.load()  # as uvicorn's `serve` does before its start-up
        server.lifespan = config.lifespan_class(config)
        with pytest.raises(SystemExit) as ended:
            await server.startup()
    assert ended.value.code == 1
    assert [listener.is_serving() for listener in server.servers] == [False]
    assert any(r.getMessage().startswith(f"probe port {port}: ") for r in caplog.records)


def _late_body_app(framing: list[tuple[bytes, bytes]]) -> Callable[..., Awaitable[None]]:
    """An app that begins its answer, sends part of the body, and never the rest.

    `framing`: the answer's length, or none (then chunked).
    """

    async def app(scope: dict[str, Any], _receive: object, send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": framing})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await asyncio.Event().wait()  # the rest never comes

    return app


@pytest.mark.parametrize(
    ("framing", "cut"),
    [
        ([(b"content-length", b"10")], b"part"),
        ([], b"4\r\npart\r\n"),  # chunked: no last chunk
    ],
    ids=["content-length", "chunked"],
)
async def test_an_answer_cut_by_the_drain_ends_short_and_closed_without_an_error(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    framing: list[tuple[bytes, bytes]],
    cut: bytes,
) -> None:
    """A real server drained with an answer half sent: the caller reads it end short, then EOF.

    The drain's own WARNING says so; uvicorn logged an ERROR for it ("ASGI callable returned
    without completing response"), as for a bug of the app's.
    """
    caplog.set_level(logging.INFO)
    uvicorn_error = logging.getLogger("uvicorn.error")  # filtered as `configure_logging` does
    monkeypatch.setattr(uvicorn_error, "filters", [*uvicorn_error.filters, _drop_server_copies])
    controller = DrainController(drain_timeout=0.05, cancel_grace=1)
    app = DrainMiddleware(_late_body_app(framing), controller=controller)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=GatewayHttpProtocol, log_config=None, lifespan="off"
    )
    server = GracefulServer(config, controller=controller)
    serving = asyncio.create_task(server.serve())
    await until(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /late HTTP/1.1\r\nHost: gateway\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        server.handle_exit(signal.SIGTERM, None)
        async with asyncio.timeout(5):
            rest = await reader.read()  # to EOF: the connection is closed, not left hanging
            await serving
    finally:
        writer.close()
    assert rest == cut
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    cuts = [r for r in caplog.records if r.getMessage() == "answer cut short by the shutdown"]
    assert [r.levelname for r in cuts] == ["WARNING"]


#: An answer larger than what the kernel holds for a caller reading nothing (its receive
#: buffer made small): the rest waits in the gateway's transport.
_UNREAD_ANSWER = b"x" * (4 * 1024 * 1024)


def _large_answer_app(*, streamed: bool) -> Callable[..., Awaitable[None]]:
    """An app answering `_UNREAD_ANSWER`: in one write, or streamed in parts of 256 KiB."""

    async def app(scope: dict[str, Any], _receive: object, send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        length = [(b"content-length", b"%d" % len(_UNREAD_ANSWER))]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        if not streamed:
            await send({"type": "http.response.body", "body": _UNREAD_ANSWER})
            return
        part = 256 * 1024
        for start in range(0, len(_UNREAD_ANSWER), part):
            more = start + part < len(_UNREAD_ANSWER)
            piece = _UNREAD_ANSWER[start : start + part]
            await send({"type": "http.response.body", "body": piece, "more_body": more})

    return app


def _unsent(server: GracefulServer) -> int:
    """Bytes the server's connections hold, not yet taken by their callers."""
    return sum(c.transport.get_write_buffer_size() for c in server.server_state.connections)


@pytest.mark.parametrize("streamed", [False, True], ids=["answered", "being-answered"])
async def test_a_caller_that_stopped_reading_is_cut_off_by_the_drain_not_uvicorns_backstop(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, *, streamed: bool
) -> None:
    """A caller reads nothing of its answer: the drain ends its connection by its own timeout.

    The answer waited in the connection's buffer; uvicorn's shutdown waited for that
    connection until `timeout_graceful_shutdown`, then logged an ERROR, "Cancel 0 running
    task(s), timeout graceful shutdown exceeded", which pages an operator for a caller's doing.
    """
    caplog.set_level(logging.INFO)
    uvicorn_error = logging.getLogger("uvicorn.error")  # filtered as `configure_logging` does
    monkeypatch.setattr(uvicorn_error, "filters", [*uvicorn_error.filters, _drop_server_copies])
    controller = DrainController(drain_timeout=0.3, cancel_grace=0.3)
    app = DrainMiddleware(_large_answer_app(streamed=streamed), controller=controller)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=GatewayHttpProtocol,
        log_config=None,
        lifespan="off",
        timeout_graceful_shutdown=3,
    )
    server = GracefulServer(config, controller=controller)
    serving = asyncio.create_task(server.serve())
    await until(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    with socket.socket() as caller:
        caller.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        caller.setblocking(False)
        await loop.sock_connect(caller, ("127.0.0.1", port))
        await loop.sock_sendall(caller, b"GET /large HTTP/1.1\r\nHost: gateway\r\n\r\n")
        await until(lambda: _unsent(server) > 0)  # its window is full: the rest waits here
        began = loop.time()
        server.handle_exit(signal.SIGTERM, None)
        async with asyncio.timeout(10):
            await serving
        took = loop.time() - began
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert took < 3  # uvicorn's backstop, never reached
    ended = [r for r in caplog.records if r.getMessage().startswith("answer unread")]
    assert [(r.levelname, r.__dict__["connections"]) for r in ended] == [("INFO", 1)]
