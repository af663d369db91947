"""Graceful shutdown: on SIGTERM stop taking work, let in-flight requests finish, then end.

Sequence (driven by `GracefulServer`, a `uvicorn.Server`; the drain in the app itself,
`DrainController` and `DrainMiddleware`, is `resilience/drain.py`):

1. SIGTERM → `DrainController.drain()`: readiness turns 503 (`draining`), the listener stays
   open and every new request (except /healthz, /readyz, /metrics) is answered 503
   problem+json with `Retry-After` and `Connection: close`, so load balancers and callers
   move elsewhere instead of meeting refused connections.
2. In-flight requests get `drain_timeout_seconds` to finish; the drain ends as soon as none
   is left. A request is in flight from its arrival (`DrainMiddleware` sits outside the CPU
   gate and the body limits): one parked for a permit or still sending its body counts too.
3. Requests still running are cancelled (their signer calls with them) and each is answered
   503 problem+json, if its response had not started, within `cancel_grace_seconds`. One
   whose answer had begun raises `AnswerCut`: the server closes the connection under it.
4. Answers written but not yet taken by their callers (a caller that stopped reading: its
   receive window full, the rest queued in the gateway) have until `drain_timeout_seconds`
   after the drain began to go; a connection still holding one then is ended (INFO
   `answer unread at the drain's end`). Left to uvicorn, it kept the shutdown waiting until
   `timeout_graceful_shutdown`, which it reports as an ERROR, a fault of the gateway's.
5. Then uvicorn's own shutdown runs: listener closed, idle connections closed, lifespan
   shutdown (clients closed; the audit file once its queued records are written, for the
   audit's `write_timeout_seconds` at most).

A second signal means "stop now": the drain stops waiting and cancels what is in flight at
once (answered as in 3), while uvicorn's shutdown starts; the process then ends by that
signal, or, as PID 1 (which the signal's default action does not end), exits with status
128 + its number. A third SIGINT forces an immediate exit, as in uvicorn. A signal before the
server has started stops the start-up at once (nothing to drain): exit status 128 + its number.

Whatever cancels a request (the drain, uvicorn's `timeout_graceful_shutdown` backstop, the
event loop's end), `DrainMiddleware` answers it 503 `shutting-down` with `Connection: close`
if its response had not started: the connection is still open then (uvicorn would write its
own plain-text 500 on it), and an issuance's audit record, made before its response starts,
says that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from signing_gateway.observability.logging import flush_logging
from signing_gateway.resilience.drain import EXEMPT_PATHS, DrainController
from signing_gateway.runtime import worker_signals
from signing_gateway.runtime.probe_listener import start_probe_listener

logger = logging.getLogger("signing_gateway.shutdown")

#: How often the drain looks whether the answers its callers have not yet taken have gone (as
#: uvicorn looks for its connections to close).
UNREAD_POLL_SECONDS = 0.1


class StartUpStoppingServer(uvicorn.Server):
    """uvicorn's server, stopped at once by a SIGTERM or SIGINT that comes while it starts.

    uvicorn looks at a signal only once the app's start-up has ended: one that came while the
    start-up waited (trust being fetched from signers, a JWKS URL being asked) was seen a keys
    fetch's 30 s later, and the server then served or failed with status 3. Here the start-up
    is cancelled at once and the server ends without serving; `stopped_by` names the signal.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        """Serve `config`."""
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving: asyncio.Task[None] | None = None
        self._start_up_stopped = False

    @property
    def stopped_by(self) -> int | None:
        """The last signal uvicorn took as a stop (None: none did, or only a drain's)."""
        return self._captured_signals[-1] if self._captured_signals else None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Remember the loop (signals arrive outside it), then serve as usual.

        A start-up stopped by a signal (`handle_exit`) ends here: nothing was served.
        """
        self._loop = asyncio.get_running_loop()
        self._serving = asyncio.current_task()
        if self.should_exit:
            return  # asked to stop before it began (`signing-gateway demo`'s handler)
        try:
            await super().serve(sockets)
        except asyncio.CancelledError:
            if not self._start_up_stopped or self._serving is None:
                raise
            self._serving.uncancel()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Stop the start-up now if it still runs; otherwise as uvicorn (the server stops)."""
        if self._loop is None or self.started:
            super().handle_exit(sig, frame)
            return
        # Still starting: nothing to shut down yet. The start-up stops now, and the process
        # ends by the signal, as after a second one.
        logger.info("signal %s: stopping the start-up", signal.Signals(sig).name)
        super().handle_exit(sig, frame)
        self._loop.call_soon_threadsafe(self._stop_start_up)

    def _stop_start_up(self) -> None:
        # Only while the app's start-up runs: once it is done (the listeners being opened, or
        # open), `should_exit` ends the server as uvicorn ends one, shutting the app down.
        lifespan_started = getattr(getattr(self, "lifespan", None), "startup_event", None)
        done = lifespan_started is not None and lifespan_started.is_set()
        if self.started or done or self._serving is None or self._start_up_stopped:
            return
        self._start_up_stopped = True
        self._serving.cancel()


class GracefulServer(StartUpStoppingServer):
    """uvicorn's server with a drain phase before its own shutdown."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        controller: DrainController | None = None,
        listen_backlog: int | None = None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        probe_port: int | None = None,
    ) -> None:
        """Serve `config`, draining through `controller` on the first SIGTERM/SIGINT.

        `controller`: None for the drain of the app `config` names, which uvicorn loads as the
        server starts (a `serve --workers N` worker's, from its import string): taken then
        from the app's `state.drain`. `listen_backlog`: the kernel's queue of connections not
        yet accepted, when it should be longer than `config.backlog`, which asyncio also uses
        as the number of connections it accepts in one callback (see `startup`).
        `loop_factory`: makes the event loop `run` serves on, instead of the one `config.loop`
        names. `probe_port`: a second listener, answering only /healthz, /readyz and /metrics
        (see `runtime.probe_listener`).
        """
        super().__init__(config)
        self._controller = controller
        self.listen_backlog = listen_backlog
        self.loop_factory = loop_factory
        self.probe_port = probe_port
        self._drain_requested = False
        self._drain_task: asyncio.Task[None] | None = None

    @property
    def controller(self) -> DrainController:
        """The drain: the one given, else the loaded app's (known once the server starts)."""
        if self._controller is None:
            msg = "the app's drain is known once the server has loaded the app"
            raise RuntimeError(msg)
        return self._controller

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until shut down, on a loop from `loop_factory` if one was given.

        Raises:
            SystemExit: 128 + the signal's number, when a signal stopped the server (a
                second one during the drain) and raising it again did not end the process.
        """
        if self.loop_factory is None:
            super().run(sockets)
        else:
            with asyncio.Runner(loop_factory=self.loop_factory) as runner:
                runner.run(self.serve(sockets))
        if self.stopped_by is not None:
            # uvicorn raised the signal again, with its default action, which the kernel does
            # not take for PID 1 (a container's first process): without this the process
            # would exit 0, as after a completed drain. The status a shell gives a process
            # ended by that signal.
            sys.exit(128 + self.stopped_by)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The signal capture of uvicorn, with every queued log line written before it ends.

        When a signal stopped the server (a second one during the drain), uvicorn raises it
        again as this ends, and its default action ends the process without `atexit`: the
        log writer's last lines (the shutdown, "Finished server process") would be lost.

        SIGINT is raised again with its default action too, as SIGTERM is: left to Python's
        own handler (asyncio's runner's, while it runs), a second Ctrl-C during the drain
        ended `serve` in a KeyboardInterrupt traceback. That handler is put back afterwards
        (the process still runs: as PID 1, or no signal raised). A SIGINT the process was
        started with ignored (a shell's background job) stays so: `run` then exits 130.
        """
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            with super().capture_signals():
                try:
                    yield
                finally:
                    flush_logging()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start listening; then give the kernel's queue its full length (`listen_backlog`).

        asyncio accepts up to `backlog` pending connections in one callback, each set up by
        uvicorn before anything else runs: 1,000 clients connecting at once held the loop
        80-130 ms. With a small `config.backlog` (the batch) the rest are accepted in the next
        loop passes, with timers and other requests in between, while the kernel still queues
        `listen_backlog` connections, so a burst is not refused.
        """
        if self._controller is None:
            self._controller = served_drain(self.config.loaded_app)
        await super().startup(sockets)
        if self.probe_port is not None:
            await self._start_probe_listener(self.probe_port)
        if self.listen_backlog is None:
            return
        for server in self.servers:
            for listener in server.sockets:
                # A duplicate of the descriptor: the queue length belongs to the socket.
                with socket.fromfd(listener.fileno(), listener.family, listener.type) as dup:
                    dup.listen(self.listen_backlog)

    async def _start_probe_listener(self, port: int) -> None:
        try:
            listener = await start_probe_listener(self, port, EXEMPT_PATHS)
        except OSError as exc:
            # As uvicorn does when its own port cannot be bound: say why and exit 1.
            logger.error("probe port %d: %s", port, exc)  # noqa: TRY400 - the reason is enough
            for server in self.servers:
                server.close()
            await self.lifespan.shutdown()
            sys.exit(1)
        self.servers.append(listener)
        logger.info(
            "probes on http://%s:%d (%s only)",
            self.config.host,
            port,
            ", ".join(sorted(EXEMPT_PATHS)),
        )

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First SIGTERM/SIGINT drains; a second one stops now; a third SIGINT forces the exit.

        The second signal cancels what is in flight at once (each answered 503 if its response
        had not started) and starts uvicorn's shutdown; uvicorn raises it again at the end, so
        the process ends by it. A drain with nothing in flight ends at once, and a second
        Ctrl-C that comes once it has (a person pressing it twice) is still the second signal:
        uvicorn would take a SIGINT after its exit began for the third, and force the exit,
        which skips the app's shutdown (the audit file's last records, the signer clients'
        close) and logs the cancelled lifespan's traceback.
        """
        if self._loop is None or not self.started:
            super().handle_exit(sig, frame)  # still starting: stopped at once (nothing to drain)
            return
        if not self._drain_requested and not self.should_exit:
            # Not added to uvicorn's captured signals: a completed drain exits with status 0.
            self._drain_requested = True
            logger.info("signal %s: draining", signal.Signals(sig).name)
            self._loop.call_soon_threadsafe(self._start_drain)
            return
        if self._drain_requested and not self.should_exit:
            logger.info("signal %s: stopping now", signal.Signals(sig).name)
            self._loop.call_soon_threadsafe(self.controller.stop_now)
        elif self._drain_requested and not self._captured_signals:
            self._captured_signals.append(sig)  # the second signal, the drain over: not forced
            return
        super().handle_exit(sig, frame)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.controller.drain_timeout
            cancelled = await self.controller.drain()
            logger.info("drained", extra={"cancelled": cancelled})
            await self._end_unread_answers(deadline)
        finally:
            self.should_exit = True

    async def _end_unread_answers(self, deadline: float) -> None:
        """Let answers still queued for their callers go until `deadline`; then end them.

        An answer that does not fit the caller's receive window waits in the connection's
        buffer: the caller stopped reading (or reads slower than the drain allows). Its
        connection closes only once that buffer has gone, so uvicorn's shutdown waited for it
        until its `timeout_graceful_shutdown`, then logged an ERROR. Not the gateway's fault:
        at the drain's deadline (at once after a second signal) such a connection is ended
        here, the rest of its answer dropped, and an INFO line says so.
        """
        loop = asyncio.get_running_loop()
        unread = self._unread_answers()
        while unread and loop.time() < deadline and not self.controller.stopping_now:
            await asyncio.sleep(UNREAD_POLL_SECONDS)
            unread = self._unread_answers()
        if not unread:
            return
        logger.info(
            "answer unread at the drain's end: connection closed",
            extra={
                "connections": len(unread),
                "unsent_bytes": sum(t.get_write_buffer_size() for t in unread),
            },
        )
        for transport in unread:
            transport.abort()

    def _unread_answers(self) -> list[asyncio.Transport]:
        """The transports of the server's connections that hold bytes not yet sent.

        (uvloop's transports are no `asyncio.Transport` by class, but have its methods.)
        """
        unread = []
        for connection in self.server_state.connections:
            transport: asyncio.Transport | None = getattr(connection, "transport", None)
            if transport is not None and transport.get_write_buffer_size():
                unread.append(transport)
        return unread


def served_drain(app: object) -> DrainController:
    """The drain of the gateway's app as uvicorn loaded it: its `state.drain`.

    uvicorn may wrap the app it loads (its message logger at the trace level, its proxy
    headers): each wrapper holds the app it wraps as `app`.

    Raises:
        TypeError: `app` is no gateway app: it has no drain to run.
    """
    inner: object | None = app
    while inner is not None:
        drain = getattr(getattr(inner, "state", None), "drain", None)
        if isinstance(drain, DrainController):
            return drain
        inner = getattr(inner, "app", None)
    msg = f"{app!r} has no drain (app.state.drain): not the gateway's app"
    raise TypeError(msg)


class WorkerServer(GracefulServer):
    """The server of each `serve --workers N` worker: the drain of one process, Ctrl-C aside.

    The app is the one the worker loads from its configuration's import string, and its drain
    is taken once loaded (see `GracefulServer`). Each worker drains on its supervisor's
    "drain" as `serve` with one process does on SIGTERM: readiness 503, new requests 503
    `shutting-down`, the ones in flight waited for, then cancelled, exit status 0.

    The supervisor's signals (`worker_signals`) are taken as the SIGTERMs they stand for, and
    logged so (`signal SIGTERM: draining`), but each only once: a SIGTERM sent to the whole
    process group reaches the worker from its sender as well. "Drain" does nothing to a
    server already draining or stopping; "stop now" nothing to one that has had its second
    signal, and drains first one that has not drained yet (the two come in either order).
    A SIGTERM or SIGINT from elsewhere counts as it does with one process.

    A SIGINT that comes before the drain is left to the supervisor: a terminal's Ctrl-C
    reaches it and every worker at once, and the supervisor then tells each worker to drain.
    A worker draining on the Ctrl-C took the supervisor's SIGTERM, as it was then, for a
    second signal and cut its drain short at once. The next Ctrl-C is the worker's second
    signal, as with one process (`GracefulServer.handle_exit`), and a third one forces the
    exit.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """As `GracefulServer`, but a SIGINT before the drain is the supervisor's (see above)."""
        if sig == signal.SIGINT and not self._drain_requested:
            return
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """`GracefulServer`'s signal capture, and the supervisor's drain and stop now.

        Blocked in the worker until here (`serving._GatewayProcess`): one its supervisor sent
        while it started is taken now, which stops the start-up. Given back as they were,
        and blocked again, before the server raises the signal that stopped it, if one did.
        """
        with super().capture_signals():
            if threading.current_thread() is not threading.main_thread():
                yield  # as uvicorn's: signals are taken in the main thread only
                return
            handlers = {
                worker_signals.DRAIN: self._drain_on_supervisor,
                worker_signals.STOP_NOW: self._stop_now_on_supervisor,
            }
            previous = {signum: signal.signal(signum, taken) for signum, taken in handlers.items()}
            held = signal.pthread_sigmask(signal.SIG_UNBLOCK, worker_signals.SUPERVISOR_SIGNALS)
            try:
                yield
            finally:
                # The handlers first: a thread the server started does not block them.
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
                signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def _drain_on_supervisor(self, _signum: int, frame: FrameType | None) -> None:
        """The supervisor's drain: a first SIGTERM, unless already draining or stopping."""
        if not self._drain_requested and not self.should_exit:
            self.handle_exit(signal.SIGTERM, frame)

    def _stop_now_on_supervisor(self, signum: int, frame: FrameType | None) -> None:
        """The supervisor's stop now: a second SIGTERM, unless it has had its second signal.

        A server not draining yet drains first (the supervisor's drain may come after).
        """
        self._drain_on_supervisor(signum, frame)
        if not self._captured_signals:
            self.handle_exit(signal.SIGTERM, frame)
