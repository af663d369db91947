"""Command line: `fake-signer --role eu|domestic|all --port N ...` (also `python -m fake_signer`).

Options not given on the command line come from `FAKE_SIGNER_*` environment variables, then from
the defaults in `FakeSignerSettings`; a `FAKE_SIGNER_*` variable that names no option is refused.
Once listening, one line goes to stdout: `fake-signer listening on http://HOST:PORT` with the
real port (useful with `--port 0`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import uvloop
from aiohttp import web
from pydantic import ValidationError

from fake_signer.app import CANCEL_GRACE_SECONDS, create_app
from fake_signer.keys import KeysDirError
from fake_signer.settings import (
    DomesticScheme,
    FakeSignerSettings,
    LatencyDistribution,
    Overflow,
    Role,
    UnknownVariableError,
    check_variables,
)
from fake_signer.stop_signals import on_stop, take_stop_signals

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

log = logging.getLogger("fake_signer")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fake-signer",
        description="A fake EU/domestic signer for tests: not a signer, keys are throwaway.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--role", choices=[r.value for r in Role], help="services to play")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind, 0 for any free port")
    parser.add_argument("--latency-ms", type=float, help="mean simulated signing latency")
    parser.add_argument("--jitter-ms", type=float, help="latency spread (see distribution)")
    parser.add_argument("--latency-distribution", choices=[d.value for d in LatencyDistribution])
    parser.add_argument("--seed", type=int, help="seed for latency draws and random errors")
    parser.add_argument("--capacity", type=int, help="max concurrent signings (default unlimited)")
    parser.add_argument("--overflow", choices=[o.value for o in Overflow], help="when full")
    parser.add_argument("--error-rate", type=float, help="share of signings answered with 500")
    parser.add_argument("--country", help="issuer country of credentials and certificates")
    parser.add_argument("--keys-dir", help="load keys from here, or write fresh ones if empty")
    parser.add_argument("--backlog", type=int, help="listen backlog (default 8192)")
    parser.add_argument("--shutdown-timeout", type=float, help="seconds to drain on stop")
    parser.add_argument(
        "--log-level", help="debug, info, warning, error or critical (default info)"
    )
    parser.add_argument(
        "--parent-pid", type=int, help="stop once this process is no longer the parent"
    )
    parser.add_argument(
        "--domestic-scheme",
        choices=[s.value for s in DomesticScheme],
        help="domestic signatures: Ed25519 simulation (default) or Idemix CL signatures",
    )
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> FakeSignerSettings:
    """Settings from the command line over the environment.

    Raises:
        UnknownVariableError: a `FAKE_SIGNER_*` variable names no setting.
        ValidationError: an option or variable has a value its setting refuses.
    """
    given: dict[str, Any] = vars(_parser().parse_args(argv))
    check_variables(os.environ)
    return FakeSignerSettings(**given)


class ListenError(Exception):
    """The address to serve on cannot be bound (in use, not local, or the host does not resolve)."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _url(host: str, port: int) -> str:
    return f"http://{_address(host, port)}"


def _reason(exc: OSError) -> str:
    """The cause without the restated address of a bind error ("Address already in use")."""
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)  # resolver errors have negative numbers


async def serve(settings: FakeSignerSettings) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully.

    A signal before serving (one that came since `main` began, or while the keys are made or
    loaded) ends the start without listening, as one ends serving (logged, status 0), instead
    of a KeyboardInterrupt traceback for SIGINT or the default action for SIGTERM.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    take_stop_signals()
    if on_stop(functools.partial(loop.call_soon_threadsafe, stop.set)):
        stop.set()  # now, not in a later pass: the start must not get ahead of it
    watch = None
    if settings.parent_pid is not None:
        watch = asyncio.create_task(_stop_without_parent(settings.parent_pid, stop))
    try:
        await _serve_until(stop, settings)
    finally:
        on_stop(None)  # the loop is about to close: a later signal is only noted
        if watch is not None:
            watch.cancel()


#: How often the parent is looked for (`--parent-pid`): a stop within about this long.
PARENT_POLL_SECONDS = 0.25


async def _stop_without_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set `stop` once `parent_pid` is no longer this process's parent (it died: orphaned).

    Polled, as nothing portable tells a process its parent ended; `getppid` is a system call
    that cannot block.
    """
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - no event tells of a parent gone
        await asyncio.sleep(PARENT_POLL_SECONDS)
    log.warning("fake-signer: its parent (pid %d) has gone; stopping", parent_pid)
    stop.set()


async def _serve_until(stop: asyncio.Event, settings: FakeSignerSettings) -> None:
    runner = web.AppRunner(
        create_app(settings),
        access_log=None,
        # A client that gives up cancels its handler, freeing capacity like a real server would.
        handler_cancellation=True,
        # The app drains signing requests itself on shutdown (see `app._drain`); aiohttp's
        # timeout, waited twice and for ever when 0, only has the rest left to finish.
        shutdown_timeout=CANCEL_GRACE_SECONDS,
        handle_signals=False,
    )
    try:
        if await _unless_stopped(runner.setup(), stop):
            await _listen(runner, settings)
            await stop.wait()
        log.info("fake-signer stopping")
    finally:
        await runner.cleanup()


async def _unless_stopped(step: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run `step` unless `stop` is set first, which cancels it; whether `step` ran to its end.

    A stop set by the time `step` is done wins too: both can end in the same pass.
    """
    task = asyncio.create_task(step)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if stop.is_set():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    await task  # the error that ended it, if any
    return True


async def _listen(runner: web.AppRunner, settings: FakeSignerSettings) -> None:
    """Listen on the configured address and say where on stdout."""
    site = web.TCPSite(
        runner, settings.host, settings.port, backlog=settings.backlog, reuse_address=True
    )
    try:
        await site.start()
    except OSError as exc:
        where = _address(settings.host, settings.port)
        raise ListenError(f"cannot listen on {where}: {_reason(exc)}") from exc
    host, port = runner.addresses[0][:2]
    sys.stdout.write(f"fake-signer listening on {_url(str(host), int(port))}\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake signer as the command line and environment say; the exit status."""
    take_stop_signals()
    try:
        settings = parse_settings(argv)
    except (ValidationError, UnknownVariableError) as exc:
        sys.stderr.write(f"fake-signer: invalid settings\n{exc}\n")
        return 2
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr)
    try:
        uvloop.run(serve(settings))
    except (KeysDirError, ListenError) as exc:
        sys.stderr.write(f"fake-signer: {exc}\n")
        return 2
    return 0
