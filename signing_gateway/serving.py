"""Run the gateway's server once `serve`'s options and settings have checked out (`cli`).

One process (`serve_in_process`: the app, uvicorn's configuration and the drain-aware server),
or uvicorn's supervisor over `--workers` processes (`serve_workers`), each building its own
app and serving it with the same drain (`_GatewayProcess`). Kept apart from the command line
so that a refused start-up imports none of it: `cli` imports this module only after its checks
passed.

This module itself stays light: each worker imports it before anything else, to unpickle its
`SupervisedConfig`, and answers the supervisor's health checks only from then on. The app and
the HTTP protocol are named by import strings, which a worker imports once it answers; a
worker still importing the app when the supervisor's check times out (5 s: several workers
starting on a CPU or less) was killed as hung and started again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import math
import multiprocessing.connection
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from types import FrameType, FunctionType
from typing import TYPE_CHECKING, Any, Literal

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process

from signing_gateway.observability.logging import configure_logging, flush_logging
from signing_gateway.observability.telemetry import flush_telemetry
from signing_gateway.runtime import worker_signals
from signing_gateway.runtime.event_loop import bounded_loop_factory

if TYPE_CHECKING:
    from signing_gateway.settings import Settings

#: What each worker imports once it answers the supervisor (see the module's docs).
APP_FACTORY = "signing_gateway.app:create_served_app"
HTTP_PROTOCOL = "signing_gateway.runtime.http_protocol:GatewayHttpProtocol"

logger = logging.getLogger("signing_gateway.cli")
#: uvicorn's supervisor's logger, for the lines it writes about its workers.
supervisor_logger = logging.getLogger("uvicorn.error")


def _write_logs_then_end(signum: int, _frame: FrameType | None) -> None:
    """Send the queued spans and write out the queued log lines, then let `signum` end the process.

    The spans first, within their bound (`tracing.EXIT_FLUSH_SECONDS`): the exporter's own
    log lines about them are then written too.
    """
    flush_telemetry()
    flush_logging()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


class SupervisedConfig(uvicorn.Config):
    """uvicorn's configuration for `serve --workers N`, with the gateway's logging in each process.

    uvicorn sets up logging from its configuration when the configuration is built, in the
    supervisor, and again first thing in each worker it spawns, before the worker serves.
    Without the gateway's logging there, the supervisor's lines ("Uvicorn running on",
    "Started parent process") went nowhere. And a worker may end by a SIGTERM, whose default
    action skips `atexit`: one stopped before it serves, or one whose drain a second SIGTERM
    cut short, raised again once its server has shut down (a completed drain exits 0). Its last
    lines ("Application shutdown complete", "Finished server process") stayed queued, and so
    did the spans of its last seconds, with tracing on. So SIGTERM first sends and writes out
    what is queued, then ends the process as before; while the server runs it puts its own
    handler over this one (a worker's server puts this one back on the way out, the
    supervisor keeps its own to the end and exits normally).
    """

    def __init__(
        self,
        app: str,
        *,
        gateway_log_level: str,
        gateway_log_format: Literal["json", "console"],
        events_per_pass: int = 0,
        **config: Any,  # noqa: ANN401 - uvicorn.Config's own keyword arguments
    ) -> None:
        """Configure uvicorn with `config`; log at `gateway_log_level` in `gateway_log_format`.

        `events_per_pass`: the bound on ready sockets a pass of each worker's asyncio loop (0:
        none), as `serve --events-per-pass` sets it for one process.
        """
        # Set first: uvicorn.Config.__init__ calls configure_logging.
        self.gateway_log_level = gateway_log_level
        self.gateway_log_format: Literal["json", "console"] = gateway_log_format
        self.events_per_pass = events_per_pass
        super().__init__(app, **config)

    def configure_logging(self) -> None:
        """Set up uvicorn's logging, then the gateway's and the SIGTERM handler that flushes it.

        In a worker, the first of its own code that runs, SIGINT still blocked since it was
        started (`_GatewayProcess`).
        """
        super().configure_logging()
        configure_logging(level=self.gateway_log_level, fmt=self.gateway_log_format)
        signal.signal(signal.SIGTERM, _write_logs_then_end)

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        """The bounded asyncio loop for `events_per_pass`, else the one `loop` names.

        Each worker calls this in its own process, to make the loop it serves on.
        """
        bounded = _bounded_loop(self.loop, self.events_per_pass)
        return bounded if bounded is not None else super().get_loop_factory()


def _takes_bound(loop: str, events_per_pass: int) -> bool:
    """Whether `loop` is bounded to `events_per_pass` ready sockets a pass (asyncio's only)."""
    return loop == "asyncio" and events_per_pass > 0


def _bounded_loop(
    loop: str, events_per_pass: int
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory of asyncio loops bounded to `events_per_pass`; None when `loop` takes no bound."""
    return bounded_loop_factory(events_per_pass) if _takes_bound(loop, events_per_pass) else None


def _log_event_loop(loop: str, events_per_pass: int) -> None:
    """Log the event loop `serve` runs and its bound on ready sockets a pass."""
    if _takes_bound(loop, events_per_pass):
        logger.info("event loop: asyncio, at most %d ready sockets per pass", events_per_pass)
    else:
        logger.info("event loop: %s, every ready socket in each pass", loop)


@contextlib.contextmanager
def _signals_held_from_started_processes() -> Iterator[None]:
    """Start processes here with SIGINT and the supervisor's signals blocked, for them to take.

    In a terminal Ctrl-C reaches the supervisor and every worker at once. A worker still
    starting (Python importing uvicorn and this module, before any code of the gateway's
    runs) ended in a KeyboardInterrupt traceback, one per worker. Workers need no SIGINT of
    their own: the supervisor takes it and tells them to drain. A process started keeps
    the signals blocked in the thread that starts it (across `fork` and `exec` alike); the
    worker ignores SIGINT, then unblocks it, once its code runs (`_GatewayProcess.target`),
    so a Ctrl-C meanwhile is dropped there.

    The supervisor's own signals to its workers (`worker_signals`: drain, stop now) end a
    process by default: blocked, one sent to a worker still starting waits until its server
    takes it (`shutdown.WorkerServer`), which then drains or stops at once.

    Only blocked in this thread, never ignored: the supervisor's other threads (its log
    writer's) still take SIGINT for its handler, which runs here. SIGINT ignored meanwhile,
    as it was, the kernel gave a Ctrl-C to one of those threads, which dropped it: the
    supervisor never stopped.

    multiprocessing's resource tracker is started first, if it is not running yet: the first
    process spawned starts it, and starting it unblocks SIGINT in this thread, before the
    worker itself is started (the first worker then took a Ctrl-C while still importing).
    """
    resource_tracker.ensure_running()
    held = signal.pthread_sigmask(
        signal.SIG_BLOCK, {signal.SIGINT, *worker_signals.SUPERVISOR_SIGNALS}
    )
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _take_ctrl_c_from_here() -> None:
    """In a worker started by `_Supervisor`: drop a Ctrl-C still pending, and any until it serves.

    A pending signal that is ignored is discarded: what was pressed while the worker
    started, already taken by the supervisor, raises no KeyboardInterrupt here. uvicorn's
    server takes SIGINT once it serves (and puts it back to ignored as it ends).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _after_the_server(_signum: int, _frame: FrameType | None) -> None:
    """A worker's handler of its supervisor's signals outside its server: nothing to do.

    Blocked until the server takes them (`_signals_held_from_started_processes`), so this
    runs only once it has given them back: the worker has drained or stopped, and ends.
    A handler rather than ignored: an ignored signal is dropped even while blocked, and one
    sent while the worker starts would never reach its server. Not their default action,
    which ended the worker as it wrote its last lines (the supervisor stopping, it tells each
    worker still running to drain, also one that had drained on a SIGTERM of its own).
    """


#: Held while a worker builds its server: its health-check thread asks for it too.
_WORKER_SERVER_LOCK = threading.Lock()


class _GatewayProcess(Process):
    """uvicorn's worker process, serving with the gateway's drain (`shutdown.WorkerServer`).

    uvicorn's `Process` runs a plain `uvicorn.Server` in the worker, which on SIGTERM closes
    its listener at once and waits for the requests in flight without a bound: readiness was
    never 503 and no caller was turned away meanwhile. This one's `server`, the one its
    `target` runs in the worker, is the one `serve` runs with one process, apart from
    the app it loads itself and SIGINT, which it leaves to the supervisor (started with it
    held off: `_signals_held_from_started_processes`). Where uvicorn's stops a worker with
    SIGTERM (`terminate`: on the supervisor's own SIGTERM or SIGINT, a SIGHUP's restart, a
    SIGTTOU), this one sends the supervisor's drain (`worker_signals`), which the worker's
    server takes as its SIGTERM, unless it already drains on one sent to the whole process
    group; the supervisor, joining its workers, waits for them.

    A subclass of uvicorn's worker, rather than something in the worker's configuration or
    app: the server is what takes the signals and closes the listener, and uvicorn builds it
    only here. The worker's health-check thread reads `server` too, on its own: the server is
    built under a lock (its module imported then, a tenth of a second or so), so both see the
    same one.
    """

    def start(self) -> None:
        """Start the worker process, SIGINT and the supervisor's signals blocked in it."""
        with _signals_held_from_started_processes():
            super().start()

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve in the worker, SIGINT ignored until uvicorn's server takes it.

        The supervisor's signals stay blocked until the worker's server takes them.
        """
        _take_ctrl_c_from_here()
        for signum in worker_signals.SUPERVISOR_SIGNALS:
            signal.signal(signum, _after_the_server)
        super().target(sockets)

    def terminate(self) -> None:
        """Tell the worker to drain, if it still runs: uvicorn's `terminate`, by `DRAIN`.

        uvicorn's sends SIGTERM, which a worker can no longer tell from one sent to the whole
        process group (see `worker_signals`). Its log line is uvicorn's, as operators know it.
        The body is uvicorn 0.55's `Process.terminate` with the signal swapped: on an upgrade,
        compare the two.
        """
        pid = self.process.pid
        if pid is not None and self.process.exitcode is None:
            os.kill(pid, worker_signals.DRAIN)
            supervisor_logger.info("Terminated child process [%d]", pid)
            self.parent_conn.close()
            self.child_conn.close()

    @property
    def server(self) -> uvicorn.Server:
        """The worker's drain-aware server, built on first use (in the worker)."""
        with _WORKER_SERVER_LOCK:
            if self._server is None:
                # Imported here: the supervisor and a worker answering its first health
                # check need none of it (see the module's docs).
                from signing_gateway.resilience.shutdown import WorkerServer  # noqa: PLC0415

                self._server = WorkerServer(self.config)
            return self._server


def _starting_gateway_workers(
    method: Callable[[Multiprocess], None],
) -> Callable[[Multiprocess], None]:
    """`method` of uvicorn's supervisor, each worker it starts a `_GatewayProcess`.

    uvicorn's code itself, run with the name it builds a worker by, `Process`, bound to
    `_GatewayProcess`: a copy of the method's globals, uvicorn's module untouched (its own
    supervisor, `uvicorn --workers`, still starts its own workers). Copying the methods'
    bodies instead would keep the supervisor as it was in this version of uvicorn whatever
    a later one fixes there; swapping uvicorn's module global would change it for the whole
    process. The one thing relied on, that each method builds its workers by that name, is
    checked by the tests (tests/unit/gateway/test_serve_options.py).
    """
    started = FunctionType(
        method.__code__,
        {**method.__globals__, "Process": _GatewayProcess},
        method.__name__,
        method.__defaults__,
        method.__closure__,
    )
    return functools.wraps(method)(started)


#: The signals that stop the supervisor, and stop its workers now once it is stopping.
_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
#: How often the supervisor, waiting for its workers to end, looks for a further stop signal.
STOPPING_POLL_SECONDS = 0.1


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, its workers drain-aware and started without Ctrl-C.

    Drain-aware and without Ctrl-C: `_GatewayProcess`, in every method of uvicorn's that
    starts a worker: the first ones, one for a worker that died, a SIGHUP's replacements and
    SIGTTIN's added one. Stopping is uvicorn's: each worker told to drain (`terminate`), then
    a wait for each to end, which is now each worker's drain. A further SIGTERM or SIGINT,
    while it stops, stops every worker now (`join_all`): uvicorn's own took no signal while
    it waited, and only SIGKILL, which answers nothing, cut a drain short. Two that come
    close together (Ctrl-C pressed twice) are taken in one pass, before the workers were told
    to drain: the second is kept for `join_all` too.
    """

    init_processes = _starting_gateway_workers(Multiprocess.init_processes)
    keep_subprocess_alive = _starting_gateway_workers(Multiprocess.keep_subprocess_alive)
    restart_all = _starting_gateway_workers(Multiprocess.restart_all)
    handle_ttin = _starting_gateway_workers(Multiprocess.handle_ttin)

    def handle_int(self) -> None:
        """The first SIGINT stops the workers (uvicorn's); a further one is kept for `join_all`."""
        if self.should_exit.is_set():
            self.signal_queue.append(signal.SIGINT)
        else:
            super().handle_int()

    def handle_term(self) -> None:
        """The first SIGTERM stops the workers (uvicorn's); a further one is kept for `join_all`."""
        if self.should_exit.is_set():
            self.signal_queue.append(signal.SIGTERM)
        else:
            super().handle_term()

    def join_all(self) -> None:
        """Wait for every worker to end, stopping them now on a further SIGTERM or SIGINT.

        uvicorn's wait, on each worker in turn, took no signal: one that came meanwhile was
        queued and never looked at. Here each is taken as it comes (within
        `STOPPING_POLL_SECONDS`); the others (SIGHUP, SIGTTIN, SIGTTOU) stay queued, as
        before: there are no workers to restart or add once stopping. No wait for the
        workers to have taken their drain first: the stop is a signal of its own, which the
        kernel never merges with the drain, and a worker takes it as both if it has not
        drained yet. uvicorn's own wait follows, on workers that have ended.
        """
        while running := [process for process in self.processes if process.exitcode is None]:
            for signum in [signum for signum in self.signal_queue if signum in _STOP_SIGNALS]:
                self.signal_queue.remove(signum)
                self._stop_workers_now(signum)
            multiprocessing.connection.wait(
                [process.process.sentinel for process in running], STOPPING_POLL_SECONDS
            )
        super().join_all()

    def _stop_workers_now(self, signum: int) -> None:
        """Tell each worker still running to stop now: `signum` came while they drain.

        Each worker takes it as its own second SIGTERM, "stop now": what it has in flight is
        cancelled and answered 503 (`shutdown.GracefulServer.handle_exit`), unless it has had
        its second signal already, from a SIGTERM sent to the whole process group or a
        second Ctrl-C in a terminal (a SIGINT passed on would have been its third, forcing
        its exit). The supervisor's own signal (`worker_signals.STOP_NOW`), not SIGTERM: a
        worker that drains on a SIGTERM sent to the process group took the supervisor's
        SIGTERM for its second one.
        """
        logger.info("signal %s again: stopping every worker now", signal.Signals(signum).name)
        for process in self.processes:
            # Not yet waited for while its exit code is None, so the pid is still its own.
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, worker_signals.STOP_NOW)


def run_workers(supervised: SupervisedConfig) -> int:
    """Run uvicorn's supervisor over `supervised`'s workers until it stops; the exit status.

    The supervisor stops once a worker fails to start (status 3: the app, its settings or its
    files are wrong, and a restart would fail the same way), and then returns as it does after
    a SIGTERM. So the status is 3 when a worker failed to start, as `serve` with one worker
    exits, and 0 otherwise.
    """
    supervisor = _Supervisor(supervised, sockets=[supervised.bind_socket()])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        return STARTUP_FAILURE
    return 0


def _shutdown_backstop(cancel_grace: float) -> int:
    """The `timeout_graceful_shutdown` of uvicorn after the drain: a second past its grace.

    The drain has already waited for and cancelled requests; this is only a backstop.
    """
    return math.ceil(cancel_grace) + 1


def served_options(*, host: str, port: int, loop: str) -> dict[str, Any]:
    """The options uvicorn takes alike wherever the gateway serves: `serve`, its workers, `demo`.

    No logging configuration or access log of uvicorn's: the gateway sets up its logging and
    writes its own access log. Nothing uses the caller's address (the audit names the
    authenticated client), so uvicorn's X-Forwarded-* rewrite would be a layer and a header
    scan per request for nothing.
    """
    return {
        "host": host,
        "port": port,
        "loop": loop,
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
    }


def supervised_config(settings: Settings, args: argparse.Namespace) -> SupervisedConfig:
    """The supervisor's configuration of `args.workers` workers, with `serve`'s options `args`.

    Each worker process builds its own app (and clients) from the environment, whose drain
    takes the same settings as `settings`' (read from the same environment).
    """
    return SupervisedConfig(
        APP_FACTORY,
        gateway_log_level=settings.log_level,
        gateway_log_format=settings.log_format,
        factory=True,
        workers=args.workers,
        events_per_pass=args.events_per_pass,
        backlog=args.backlog,
        http=HTTP_PROTOCOL,
        timeout_graceful_shutdown=_shutdown_backstop(settings.shutdown.cancel_grace_seconds),
        **served_options(host=args.host, port=args.port, loop=args.loop),
    )


def serve_workers(settings: Settings, args: argparse.Namespace) -> int:
    """Run `args.workers` worker processes under uvicorn's supervisor; the exit status."""
    supervised = supervised_config(settings, args)
    _log_event_loop(args.loop, args.events_per_pass)
    if settings.session_store.kind == "memory":
        # Each worker holds its own sessions, and the kernel hands a connection to any.
        logger.warning(
            "issuance sessions are kept per worker (session_store.kind=memory): an issue that "
            "reaches another worker than its prepare-issue is refused 401; set "
            "session_store.kind=redis to share them"
        )
    return run_workers(supervised)


def serve_in_process(settings: Settings, args: argparse.Namespace) -> int:
    """Serve in this process until stopped, with `serve`'s options `args`; the exit status."""
    # Imported here, not with the module: a worker imports the module first (see above).
    from signing_gateway.app import create_served_app  # noqa: PLC0415
    from signing_gateway.resilience.drain import DrainController  # noqa: PLC0415
    from signing_gateway.resilience.shutdown import GracefulServer  # noqa: PLC0415
    from signing_gateway.runtime.http_protocol import GatewayHttpProtocol  # noqa: PLC0415

    app = create_served_app(settings)
    drain: DrainController = app.state.drain
    batch = min(args.accept_batch, args.backlog)
    config = uvicorn.Config(
        app,
        backlog=batch,  # asyncio: connections accepted per loop pass (see GracefulServer)
        # httptools, with a size and a time bound on each request head (the probe port's
        # server takes it from this configuration too).
        http=GatewayHttpProtocol,
        timeout_graceful_shutdown=_shutdown_backstop(drain.cancel_grace),
        **served_options(host=args.host, port=args.port, loop=args.loop),
    )
    loop_factory = _bounded_loop(args.loop, args.events_per_pass)
    _log_event_loop(args.loop, args.events_per_pass)
    GracefulServer(
        config,
        controller=drain,
        listen_backlog=args.backlog,
        loop_factory=loop_factory,
        probe_port=args.probe_port,
    ).run()
    return 0
