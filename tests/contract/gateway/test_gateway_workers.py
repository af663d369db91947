"""`serve --workers N` as a real process: its log lines, Ctrl-C, and each worker's drain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator

import httpx
import psutil
import pytest

from signing_gateway.api import examples
from tests.contract.gateway.conftest import set_control
from tests.contract.gateway.gateway_process import (
    GatewayProcess,
    gateway_env,
    running_gateway_process,
    serving_workers,
)
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.polling import until, until_answered
from tests.support.terminal import press_ctrl_c

pytestmark = pytest.mark.timeout(60)

WORKERS = 2


async def test_sigterm_leaves_no_log_line_of_supervisor_or_workers_unwritten(fakes):
    """Stopped by SIGTERM, the supervisor and each worker have written their last lines."""
    eu, domestic = fakes
    env = gateway_env(eu.base_url, domestic.base_url, SIGNING_GATEWAY_LOG_LEVEL="INFO")
    with running_gateway_process(env, "--workers", str(WORKERS)) as gateway:
        # Ready means one worker answered; signal once every worker is serving.
        await until(lambda: gateway.log().count("Application startup complete.") >= WORKERS, 15)
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(timeout=15) == 0
        events = [json.loads(line)["event"] for line in gateway.log().splitlines()]
    for supervisor_line in ("Uvicorn running on", "Started parent process", "Stopping parent"):
        assert _count(events, supervisor_line) == 1, supervisor_line
    for worker_line in ("Application shutdown complete.", "Finished server process"):
        assert _count(events, worker_line) == WORKERS, worker_line
    # Sessions kept in each worker's memory: the supervisor says so once, before any starts.
    assert _count(events, "issuance sessions are kept per worker") == 1


@pytest.mark.parametrize("when", ["serving", "starting"])
async def test_ctrl_c_stops_the_supervisor_and_every_worker_quietly(fakes, when: str):
    """Ctrl-C as a terminal sends it, to the supervisor and every worker at once: status 0.

    No traceback, no worker restarted, none left running; while the workers serve, and while
    they still start (sent once the supervisor logged its start). Before, a worker still
    starting (importing uvicorn) ended in a KeyboardInterrupt traceback.
    """
    eu, domestic = fakes
    env = gateway_env(eu.base_url, domestic.base_url, SIGNING_GATEWAY_LOG_LEVEL="INFO")
    serving = when == "serving"
    with running_gateway_process(
        env, "--workers", str(WORKERS), as_a_terminal=True, ready=serving
    ) as gateway:
        started = "Application startup complete." if serving else "Started parent process"
        await until(lambda: gateway.log().count(started) >= (WORKERS if serving else 1), 15)
        processes = [psutil.Process(gateway.process.pid)]
        processes += processes[0].children(recursive=True)
        press_ctrl_c(gateway.process)
        assert gateway.process.wait(timeout=15) == 0, gateway.log()[-3000:]
        _, alive = psutil.wait_procs(processes, timeout=10)
        log = gateway.log()
    assert alive == []
    assert "Traceback" not in log, log[-3000:]
    assert " died" not in log, log[-3000:]
    assert "Received SIGINT, exiting." in log


def _drain_env(
    fakes, *, drain_timeout: float, **eu_signer: object
) -> tuple[FakeSignerProcess, dict[str, str]]:
    """The EU fake signer, set to `eu_signer` (`/_control`); the settings of a short drain."""
    eu, domestic = fakes
    set_control(eu, **eu_signer)
    return eu, gateway_env(
        eu.base_url,
        domestic.base_url,
        SIGNING_GATEWAY_LOG_LEVEL="INFO",
        SIGNING_GATEWAY_SHUTDOWN__DRAIN_TIMEOUT_SECONDS=str(drain_timeout),
        SIGNING_GATEWAY_SHUTDOWN__CANCEL_GRACE_SECONDS="1",
    )


def _signer_in_flight(signer: FakeSignerProcess) -> int:
    """Calls the fake signer is serving now (GET /_stats)."""
    in_flight: int = signer.stats()["inFlight"]
    return in_flight


async def _requests_at_the_signer(
    client: httpx.AsyncClient, signer: FakeSignerProcess, count: int
) -> list[asyncio.Task[httpx.Response]]:
    """`count` issuances sent, once each is at `signer`."""
    requests = [
        asyncio.create_task(client.post("/v1/dcc", json=examples.EU_VACCINATION))
        for _ in range(count)
    ]
    await until(lambda: _signer_in_flight(signer) >= count)
    return requests


async def _answered_shutting_down(requests: list[asyncio.Task[httpx.Response]]) -> float:
    """Seconds until each of `requests` is answered, each 503 `shutting-down`."""
    started = time.monotonic()
    answers = await asyncio.gather(*requests, return_exceptions=True)
    answered_after = time.monotonic() - started
    for answer in answers:
        assert isinstance(answer, httpx.Response), f"no answer: {answer!r}"
        assert answer.status_code == 503
        assert answer.json()["type"].endswith("/shutting-down")
    return answered_after


async def test_sigterm_drains_every_worker_before_the_supervisor_exits(fakes):
    """SIGTERM to the supervisor: each worker drains as `serve` with one process does.

    Readiness turns 503 `draining` while the listener stays open, a new request is refused
    503 `shutting-down`, the requests in flight finish 200, and the supervisor exits 0 once
    every worker has. Before, each worker ran uvicorn's plain server: its listener closed at
    once (readiness refused, not 503), with nothing to turn callers away meanwhile.
    """
    eu, env = _drain_env(fakes, drain_timeout=10, latencyMs=1500)
    with running_gateway_process(env, "--workers", str(WORKERS)) as gateway:
        workers = await serving_workers(gateway, WORKERS)
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            in_flight = await _requests_at_the_signer(client, eu, 4)
            gateway.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            # Fresh connections, so whichever worker takes one, it has had its SIGTERM too.
            async with httpx.AsyncClient(
                base_url=gateway.base_url,
                timeout=5,
                limits=httpx.Limits(max_keepalive_connections=0),
            ) as fresh:
                ready = await until_answered(
                    lambda: fresh.get("/readyz"), lambda answer: answer.status_code == 503
                )
                assert ready.json()["draining"] is True
                await until(lambda: gateway.log().count("signal SIGTERM: draining") >= WORKERS)
                refused = await fresh.post("/v1/dcc", json=examples.EU_VACCINATION)
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["type"].endswith("/shutting-down")
            answers = await asyncio.gather(*in_flight)
        assert [answer.status_code for answer in answers] == [200] * 4
        assert gateway.process.wait(timeout=15) == 0, gateway.log()[-3000:]
        # Done once the requests were: not at the drain timeout.
        assert time.monotonic() - signalled < 8
        _, alive = psutil.wait_procs(workers, timeout=5)
        log = gateway.log()
    assert alive == []
    assert log.count('"drained"') == WORKERS, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


async def test_a_request_outliving_the_workers_drain_is_answered_503_in_time(fakes):
    """A request still at the signer at the drain timeout is cancelled and answered 503.

    Within the cancel grace; then each worker and the supervisor exit. Before, uvicorn's plain
    server waited for it without a bound: the caller got no answer, and nothing ended.
    """
    eu, env = _drain_env(fakes, drain_timeout=0.5, fault="hang", faultCount=-1)
    with running_gateway_process(env, "--workers", str(WORKERS)) as gateway:
        workers = await serving_workers(gateway, WORKERS)
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5) as client:
            hung = await _requests_at_the_signer(client, eu, 2)
            gateway.process.send_signal(signal.SIGTERM)
            answered_after = await _answered_shutting_down(hung)
        assert 0.4 < answered_after < 2.5
        assert gateway.process.wait(timeout=15) == 0, gateway.log()[-3000:]
        _, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == []


async def test_a_sighup_restart_drains_each_worker_it_replaces(fakes):
    """SIGHUP: each old worker, stopped once its replacement serves, drains as on SIGTERM.

    Its requests in flight finish 200; the new workers serve on.
    """
    eu, env = _drain_env(fakes, drain_timeout=10, latencyMs=1500)
    with running_gateway_process(env, "--workers", str(WORKERS)) as gateway:
        old_workers = await serving_workers(gateway, WORKERS)
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            in_flight = await _requests_at_the_signer(client, eu, 4)
            gateway.process.send_signal(signal.SIGHUP)
            answers = await asyncio.gather(*in_flight)
            _, alive = psutil.wait_procs(old_workers, timeout=15)
            set_control(eu, latencyMs=0)
            served = await client.post("/v1/dcc", json=examples.EU_VACCINATION)
        log = gateway.log()
        assert gateway.process.poll() is None, log[-3000:]
    assert [answer.status_code for answer in answers] == [200] * 4
    assert alive == []
    assert served.status_code == 200
    assert log.count("signal SIGTERM: draining") == WORKERS, log[-3000:]
    assert log.count('"drained"') == WORKERS, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


async def test_a_second_ctrl_c_cuts_the_workers_drain_short(fakes):
    """Ctrl-C drains every worker; a second one cancels what is in flight at once, answered 503.

    As a terminal sends it: to the supervisor and every worker at once. The first is left to
    the supervisor, whose SIGTERM each worker drains on; the second is each worker's own
    second signal, as with one process.
    """
    eu, env = _drain_env(fakes, drain_timeout=20, fault="hang", faultCount=-1)
    with running_gateway_process(env, "--workers", str(WORKERS), as_a_terminal=True) as gateway:
        workers = await serving_workers(gateway, WORKERS)
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            hung = await _requests_at_the_signer(client, eu, 2)
            press_ctrl_c(gateway.process)
            await until(lambda: gateway.log().count("signal SIGTERM: draining") >= WORKERS)
            press_ctrl_c(gateway.process)
            answered_after = await _answered_shutting_down(hung)
        assert answered_after < 3  # not at the drain timeout
        assert gateway.process.wait(timeout=15) == 0, gateway.log()[-3000:]
        _, alive = psutil.wait_procs(workers, timeout=5)
        log = gateway.log()
    assert alive == []
    # Each worker with a request in flight stops now; one without had ended its drain.
    assert "signal SIGINT: stopping now" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    # Not forced out (a third SIGINT): each worker shut its app down.
    assert log.count("Application shutdown complete.") == WORKERS, log[-3000:]


@pytest.mark.parametrize("second", ["while draining", "at once"])
async def test_a_second_signal_to_the_supervisor_alone_cuts_the_workers_drain_short(
    fakes, second: str
):
    """A second signal to the supervisor only stops each worker's drain now: answered 503.

    As supervisord or systemd (`KillMode=mixed`) sends it, to the main process alone: the
    supervisor passes it on to every worker still running, each worker's own second signal;
    also when both came before it had signalled its workers (SIGTERM, then SIGINT: a second
    SIGTERM sent before the first is taken reaches it as one). Before, the supervisor kept
    it: the request in flight waited out the drain timeout, and only SIGKILL, which answers
    nothing, cut it short.
    """
    eu, env = _drain_env(fakes, drain_timeout=30, fault="hang", faultCount=-1)
    with running_gateway_process(env, "--workers", str(WORKERS)) as gateway:
        workers = await serving_workers(gateway, WORKERS)
        try:
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=40) as client:
                hung = await _requests_at_the_signer(client, eu, 1)
                gateway.process.send_signal(signal.SIGTERM)
                if second == "while draining":
                    await until(lambda: gateway.log().count("signal SIGTERM: draining") >= WORKERS)
                    assert not hung[0].done()
                    assert _signer_in_flight(eu) == 1  # still in flight: the drain waits for it
                    gateway.process.send_signal(signal.SIGTERM)
                else:
                    gateway.process.send_signal(signal.SIGINT)
                await _stopped_now(gateway, workers, hung)
        finally:
            _kill_left_running(workers)


async def test_a_sigterm_to_the_process_group_drains_every_worker(fakes):
    """SIGTERM to the whole process group drains each worker: what is in flight finishes 200.

    As systemd's default `KillMode=control-group` sends it: to the supervisor and every worker
    at once. Before, each worker had it twice, from the sender and passed on by the
    supervisor as SIGTERM, and took the second for "stop now": the requests in flight were
    answered 503 at once, as after two.
    """
    eu, env = _drain_env(fakes, drain_timeout=10, latencyMs=1500)
    async with _workers_in_their_own_group(env) as (gateway, workers):
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            in_flight = await _requests_at_the_signer(client, eu, 4)
            _sigterm_to_the_process_group(gateway)
            answers = await asyncio.gather(*in_flight)
        assert [answer.status_code for answer in answers] == [200] * 4
        assert gateway.process.wait(timeout=15) == 0, gateway.log()[-3000:]
        _, alive = psutil.wait_procs(workers, timeout=5)
        log = gateway.log()
    assert alive == []
    # Each worker drained once: the supervisor's drain added nothing to the sender's SIGTERM.
    assert log.count("signal SIGTERM: draining") == WORKERS, log[-3000:]
    assert log.count('"drained"') == WORKERS, log[-3000:]
    assert "stopping now" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


async def test_a_second_sigterm_to_the_process_group_cuts_the_workers_drain_short(fakes):
    """A second SIGTERM to the whole process group stops each worker's drain: answered 503.

    Each worker's own second signal, from the sender, whether the supervisor's "stop now"
    reaches it before or after: the request in flight is cancelled well before the drain
    timeout, and every process exits. Until then, the supervisor's "drain" after the first
    left the drain waiting. Before, that was a second SIGTERM: the drain stopped at once.
    """
    eu, env = _drain_env(fakes, drain_timeout=30, fault="hang", faultCount=-1)
    async with (
        _workers_in_their_own_group(env) as (gateway, workers),
        httpx.AsyncClient(base_url=gateway.base_url, timeout=40) as client,
    ):
        hung = await _requests_at_the_signer(client, eu, 1)
        _sigterm_to_the_process_group(gateway)
        await until(lambda: gateway.log().count("signal SIGTERM: draining") >= WORKERS)
        # The supervisor has told each worker still running to drain too: still a first signal.
        await until(lambda: all(_told_to_drain_or_ended(gateway, worker) for worker in workers))
        assert _signer_in_flight(eu) == 1  # still in flight: the drain waits for it
        assert not hung[0].done()
        _sigterm_to_the_process_group(gateway)
        await _stopped_now(gateway, workers, hung)


@contextlib.asynccontextmanager
async def _workers_in_their_own_group(
    env: dict[str, str],
) -> AsyncIterator[tuple[GatewayProcess, list[psutil.Process]]]:
    """`serve --workers` serving, its process group its own (not the test run's); its workers.

    Every process stopped after the block.
    """
    with running_gateway_process(env, "--workers", str(WORKERS), as_a_terminal=True) as gateway:
        workers = await serving_workers(gateway, WORKERS)
        try:
            yield gateway, workers
        finally:
            _kill_left_running(workers)


async def _stopped_now(
    gateway: GatewayProcess,
    workers: list[psutil.Process],
    hung: list[asyncio.Task[httpx.Response]],
) -> None:
    """`hung` answered 503 at once, not at the drain timeout; then every process ends.

    Each worker stopped now on a SIGTERM (or the supervisor's "stop now", taken as one).
    """
    async with asyncio.timeout(5):
        answered_after = await _answered_shutting_down(hung)
    assert answered_after < 3  # not at the drain timeout
    assert gateway.process.wait(timeout=15) == 0, gateway.log()[-3000:]
    _, alive = psutil.wait_procs(workers, timeout=5)
    log = gateway.log()
    assert alive == []
    assert "signal SIGTERM: stopping now" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def _told_to_drain_or_ended(gateway: GatewayProcess, worker: psutil.Process) -> bool:
    """Whether the supervisor has told `worker` to drain, or it has ended (nothing to tell)."""
    if f"Terminated child process [{worker.pid}]" in gateway.log():
        return True
    try:
        return worker.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _sigterm_to_the_process_group(gateway: GatewayProcess) -> None:
    """SIGTERM to every process of the gateway's own process group (not the test run's)."""
    pid = gateway.process.pid
    assert os.getpgid(pid) == pid, "not the leader of its own process group"
    os.killpg(pid, signal.SIGTERM)


def _kill_left_running(workers: list[psutil.Process]) -> None:
    """SIGKILL each of `workers` still running (psutil checks it is still the same process)."""
    for worker in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()
    psutil.wait_procs(workers, timeout=5)


def _count(events: list[str], start: str) -> int:
    """How many of the logged `events` begin with `start`."""
    return sum(event.startswith(start) for event in events)
