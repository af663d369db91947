"""Graceful shutdown of a real `signing-gateway serve` process on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from signing_gateway.api import examples
from tests.contract.gateway.gateway_process import (
    GatewayProcess,
    gateway_env,
    running_gateway_process,
)
from tests.contract.resilience.conftest import control, metric, seen
from tests.support.polling import until
from tests.support.terminal import press_ctrl_c

pytestmark = pytest.mark.timeout(60)


#: The gateway under uvicorn's own command line, as docs/operations.md gives it.
_UVICORN = (
    "-m",
    "uvicorn",
    "--factory",
    "signing_gateway.app:create_served_app",
    "--loop",
    "asyncio",
    "--http",
    "signing_gateway.runtime.http_protocol:GatewayHttpProtocol",
)


def _env(fakes, drain_timeout: float) -> dict[str, str]:
    eu, domestic = fakes
    return gateway_env(
        eu.base_url,
        domestic.base_url,
        SIGNING_GATEWAY_AUTH__MODE="disabled",
        SIGNING_GATEWAY_SHUTDOWN__DRAIN_TIMEOUT_SECONDS=str(drain_timeout),
        SIGNING_GATEWAY_SHUTDOWN__CANCEL_GRACE_SECONDS="1",
    )


async def test_sigterm_drains_in_flight_requests_and_refuses_new_work(fakes):
    """After SIGTERM: /readyz 503 draining, new work 503 problem+json, in-flight ones finish 200."""
    eu, _ = fakes
    control(eu, latencyMs=1500)
    with running_gateway_process(_env(fakes, drain_timeout=10)) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            in_flight = [
                asyncio.create_task(client.post("/v1/dcc", json=examples.EU_VACCINATION))
                for _ in range(3)
            ]
            await until(lambda: eu.stats()["inFlight"] >= 3)
            signalled = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)
            ready = await client.get("/readyz")
            deadline = time.monotonic() + 2
            while not ready.json().get("draining") and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # polling until the signal was handled
                ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["draining"] is True
            refused = await client.post("/v1/dcc", json=examples.EU_VACCINATION)
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["type"].endswith("/shutting-down")
            assert refused.headers["retry-after"] == "1"
            health = await client.get("/healthz")
            assert health.status_code == 200
            answers = await asyncio.gather(*in_flight)
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert gateway.process.wait(timeout=10) == 0
        # It ended soon after the last request finished, not at the drain timeout.
        assert time.monotonic() - signalled < 6


async def test_drain_timeout_cancels_and_answers_the_stragglers(fakes):
    """Requests still running at the drain timeout are cancelled and answered 503, not dropped."""
    eu, _ = fakes
    control(eu, fault="hang", faultCount=-1)
    with running_gateway_process(_env(fakes, drain_timeout=0.5)) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            in_flight = [
                asyncio.create_task(client.post("/v1/dcc", json=examples.EU_VACCINATION))
                for _ in range(2)
            ]
            await until(lambda: eu.stats()["inFlight"] >= 2)
            signalled = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*in_flight)
            answered_after = time.monotonic() - signalled
        for answer in answers:
            assert answer.status_code == 503
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["type"].endswith("/shutting-down")
        assert 0.4 < answered_after < 2.0
        assert gateway.process.wait(timeout=10) == 0
        assert seen(eu, "get_credential") == {"fault:hang": 2}  # released: calls cancelled
        assert eu.stats()["inFlight"] == 0


async def test_a_request_still_sending_its_body_is_drained_and_answered_503(fakes):
    """A request whose body is half sent at SIGTERM is waited for, then answered 503 problem+json.

    The drain used to start inside the body limits, which read the whole body first: such a
    request was not in flight for it, the drain ended at once, and uvicorn's backstop later
    cancelled it with a plain-text 500.
    """
    with running_gateway_process(_env(fakes, drain_timeout=0.5)) as gateway:
        body = orjson.dumps(examples.EU_VACCINATION)
        port = int(gateway.base_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/dcc HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"X-Request-ID: half-sent\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body[: len(body) // 2])
        )
        await writer.drain()
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5) as client:
            deadline = time.monotonic() + 5
            # The scrape counts itself; the half-sent request makes two.
            while await metric(client, "gateway_requests_in_progress") < 2:
                assert time.monotonic() < deadline, "the request never reached the gateway"
                await asyncio.sleep(0.02)  # polling until the gateway has the request
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            answer = await reader.read()  # the gateway closes the connection after it
        answered_after = time.monotonic() - signalled
        writer.close()
        head, _, problem = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").lower().split("\r\n")
        assert lines[0] == "http/1.1 503 service unavailable"
        assert "content-type: application/problem+json" in lines
        assert "x-request-id: half-sent" in lines
        assert "connection: close" in lines
        assert orjson.loads(problem)["type"].endswith("/shutting-down")
        assert 0.4 < answered_after < 1.5  # at the drain timeout, within the cancel grace
        assert gateway.process.wait(timeout=10) == 0
    assert seen(fakes[0], "get_credential") == {}  # it never got as far as the signer


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_second_signal_still_writes_the_last_log_lines(fakes, signum: signal.Signals):
    """A second signal cuts the drain short; the process dies by it, its last lines written.

    SIGINT as Ctrl-C twice in a terminal: the gateway started with it at its default action.
    Before, the second SIGINT, raised again once uvicorn had shut down, reached asyncio's
    runner and ended `serve` in a KeyboardInterrupt traceback.
    """
    eu, _ = fakes
    control(eu, fault="hang", faultCount=-1)
    env = {**_env(fakes, drain_timeout=10), "SIGNING_GATEWAY_LOG_LEVEL": "INFO"}
    with running_gateway_process(env, as_a_terminal=True) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            hung = asyncio.create_task(client.post("/v1/dcc", json=examples.EU_VACCINATION))
            await until(lambda: eu.stats()["inFlight"] >= 1)
            gateway.process.send_signal(signum)
            deadline = time.monotonic() + 5
            while "draining" not in gateway.log():
                assert time.monotonic() < deadline, "the first signal was never handled"
                await asyncio.sleep(0.02)  # polling the log until the drain began
            gateway.process.send_signal(signum)
            assert gateway.process.wait(timeout=15) == -signum
            hung.cancel()
        log = gateway.log()
    assert "Application shutdown complete." in log
    assert "Finished server process" in log
    assert "Traceback" not in log, log[-3000:]


async def test_ctrl_c_twice_with_nothing_in_flight_still_shuts_the_app_down(fakes):
    """Ctrl-C pressed twice on an idle gateway: the app shuts down, then the process ends.

    With nothing in flight the first Ctrl-C's drain ends at once, and uvicorn's shutdown
    takes ~0.3 s more. Before, uvicorn took a Ctrl-C in that time for a third signal and
    forced the exit, skipping the app's shutdown (the audit file's last records, the signer
    clients' close): "Application shutdown complete." was missing in 6 runs of 6.
    """
    env = {**_env(fakes, drain_timeout=10), "SIGNING_GATEWAY_LOG_LEVEL": "INFO"}
    with running_gateway_process(env, as_a_terminal=True) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            assert (await client.post("/v1/dcc", json=examples.EU_VACCINATION)).status_code == 200
        press_ctrl_c(gateway.process)
        await _wait_logged(gateway, '"drained"')
        press_ctrl_c(gateway.process)
        assert gateway.process.wait(timeout=15) == -signal.SIGINT  # ended by the second one
        log = gateway.log()
    assert "Application shutdown complete." in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def _as_pid_1() -> list[str]:
    """A wrapper making the gateway PID 1 of a new PID namespace, as in a container; or skip.

    `--kill-child`: the gateway dies with the wrapper, should the test stop it.
    """
    command = ["unshare", "--pid", "--fork", "--kill-child"]
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: no PID namespace to run PID 1 in")
    tried = subprocess.run([*command, "true"], capture_output=True, text=True, check=False)  # noqa: S603
    if tried.returncode != 0:
        pytest.skip(f"unshare --pid is not permitted here: {tried.stderr.strip()}")
    return command


async def _stop_as_pid_1(fakes, *, second_signal: bool) -> int:
    """Exit status of a gateway run as PID 1, SIGTERMed with a request in flight at a hung signer.

    With `second_signal`, a second SIGTERM once the drain began; else the drain completes
    (the request is cut by the drain timeout). The status is the wrapper's, which is PID 1's.
    """
    wrapper = _as_pid_1()
    eu, _ = fakes
    control(eu, fault="hang", faultCount=-1)
    drain_timeout = 10 if second_signal else 1
    env = {**_env(fakes, drain_timeout=drain_timeout), "SIGNING_GATEWAY_LOG_LEVEL": "INFO"}
    with running_gateway_process(env, wrapper=wrapper) as gateway:
        [pid_1] = psutil.Process(gateway.process.pid).children()
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            hung = _post_to_a_hung_signer(client, "pid-1")
            await until(lambda: eu.stats()["inFlight"] >= 1)
            os.kill(pid_1.pid, signal.SIGTERM)
            await _wait_logged(gateway, '"draining"')
            if second_signal:
                os.kill(pid_1.pid, signal.SIGTERM)
            answer = await hung
            assert answer.status_code == 503, answer.text
        return gateway.process.wait(timeout=15)


async def test_a_second_signal_ends_pid_1_with_128_plus_the_signal(fakes):
    """As PID 1 (a container), a drain cut short by a second SIGTERM exits 143, not 0.

    uvicorn raises the signal again once served, with its default action, which the kernel
    does not take for PID 1: the process went on and exited 0, as after a completed drain.
    """
    assert await _stop_as_pid_1(fakes, second_signal=True) == 128 + signal.SIGTERM


async def test_a_completed_drain_ends_pid_1_with_0(fakes):
    """As PID 1, one SIGTERM and a drain that ran its course still exit 0."""
    assert await _stop_as_pid_1(fakes, second_signal=False) == 0


async def _wait_logged(gateway: GatewayProcess, text: str) -> None:
    deadline = time.monotonic() + 5
    while text not in gateway.log():
        assert time.monotonic() < deadline, f"never logged: {text}"
        await asyncio.sleep(0.02)  # polling the log until the gateway got that far


def _post_to_a_hung_signer(client: httpx.AsyncClient, request_id: str) -> asyncio.Task:
    return asyncio.create_task(
        client.post("/v1/dcc", json=examples.EU_VACCINATION, headers={"X-Request-ID": request_id})
    )


def _assert_answered_503_as_recorded(answer: httpx.Response, audit: Path, request_id: str) -> None:
    """The drain's answer to a cancelled request (not uvicorn's plain-text 500), and its record."""
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["connection"] == "close"
    assert answer.json()["type"].endswith("/shutting-down")
    [record] = [orjson.loads(line) for line in audit.read_bytes().splitlines()]
    assert (record["requestId"], record["outcome"]) == (request_id, "cancelled")
    assert (record["status"], record["problemType"]) == (503, answer.json()["type"])


async def test_a_second_signal_cancels_in_flight_requests_at_once_answering_503(fakes, tmp_path):
    """SIGTERM twice: the request in flight is cancelled now, answered 503, recorded as such.

    The second signal used to hand over to uvicorn's shutdown, whose backstop cancelled the
    request `cancel_grace_seconds` + 1 s later past the drain: the caller got uvicorn's
    plain-text 500 (and an "Exception in ASGI application" traceback was logged) while the
    audit record said 503 `shutting-down`.
    """
    eu, _ = fakes
    control(eu, fault="hang", faultCount=-1)
    audit = tmp_path / "audit.jsonl"
    env = {
        **_env(fakes, drain_timeout=30),
        "SIGNING_GATEWAY_LOG_LEVEL": "INFO",
        "SIGNING_GATEWAY_AUDIT__FILE": str(audit),
    }
    with running_gateway_process(env) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            hung = _post_to_a_hung_signer(client, "cut-1")
            await until(lambda: eu.stats()["inFlight"] >= 1)
            gateway.process.send_signal(signal.SIGTERM)
            await _wait_logged(gateway, '"draining"')
            signalled = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)
            answer = await hung
            answered_after = time.monotonic() - signalled
        assert gateway.process.wait(timeout=10) == -signal.SIGTERM
        log = gateway.log()
    _assert_answered_503_as_recorded(answer, audit, "cut-1")
    assert answered_after < 0.5  # at once, not at uvicorn's backstop (2 s) nor the drain's 30 s
    assert "Exception in ASGI application" not in log
    assert '"cancelled":1' in log.replace(" ", "")  # the drain cancelled it


async def test_uvicorns_backstop_cancellation_is_answered_503_as_recorded(fakes, tmp_path):
    """Under uvicorn's own command line (no drain) its shutdown backstop meets the same answer.

    uvicorn cancels the requests still running at `--timeout-graceful-shutdown`; their
    connections are still open then, so the 503 reaches the caller instead of uvicorn's
    plain-text 500, and the audit record says that 503.
    """
    eu, _ = fakes
    control(eu, fault="hang", faultCount=-1)
    audit = tmp_path / "audit.jsonl"
    env = {**_env(fakes, drain_timeout=30), "SIGNING_GATEWAY_AUDIT__FILE": str(audit)}
    uvicorn = (*_UVICORN, "--timeout-graceful-shutdown", "1")
    with running_gateway_process(env, program=uvicorn) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            hung = _post_to_a_hung_signer(client, "cut-2")
            await until(lambda: eu.stats()["inFlight"] >= 1)
            gateway.process.send_signal(signal.SIGTERM)
            answer = await hung
        assert gateway.process.wait(timeout=10) == -signal.SIGTERM  # uvicorn raises it again
        log = gateway.log()
    _assert_answered_503_as_recorded(answer, audit, "cut-2")
    assert "Exception in ASGI application" not in log


def test_uvicorns_own_command_line_writes_its_last_lines_before_the_signal_ends_it(fakes):
    """Pin that the lines uvicorn logs after the app's shutdown reach the log, SIGTERM or not.

    uvicorn ends a process a signal stopped by raising that signal again, whose default action
    kills it without `atexit`, which wrote out the log writer's queue: "Application shutdown
    complete." and "Finished server process" were lost, while docs/operations.md (Logs) says
    everything queued is written at exit.
    """
    with running_gateway_process(_env(fakes, drain_timeout=5), program=_UVICORN) as gateway:
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(timeout=10) == -signal.SIGTERM  # uvicorn raises it again
        log = gateway.log()
    assert "Application shutdown complete." in log, log[-2000:]
    assert "Finished server process" in log, log[-2000:]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_start_up_stops_it_at_once(signum: signal.Signals) -> None:
    """Pin that a signal while the start-up still waits ends the process at once, 128 + it.

    Here the start-up waits for keys from signers that take the connection and never answer.
    Before, uvicorn looked at the signal only once the start-up had ended: the keys fetch
    waited out its 30 s, and the process then exited 3, a failed start-up; a second signal,
    or Ctrl-C twice, changed nothing.
    """
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel's queue; nothing reads them
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env = gateway_env(url, url, SIGNING_GATEWAY_LOG_LEVEL="INFO")
        # SIGINT at its default action, as in a terminal (a shell's background job, which
        # this test run may be, has it ignored: uvicorn takes it even so).
        with running_gateway_process(env, as_a_terminal=True, ready=False) as gateway:
            deadline = time.monotonic() + 15
            while "Waiting for application startup." not in gateway.log():
                assert gateway.process.poll() is None, gateway.log()
                assert time.monotonic() < deadline, "the start-up never began"
                time.sleep(0.02)  # polling the log until the start-up began
            signalled = time.monotonic()
            gateway.process.send_signal(signum)
            assert gateway.process.wait(timeout=10) == 128 + signum
            assert time.monotonic() - signalled < 5
            log = gateway.log()
    assert f"signal {signum.name}: stopping the start-up" in log
    assert "Traceback" not in log
    assert "start-up failed" not in log
