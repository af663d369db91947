"""`serve --workers N` as a real process: the supervisor's and every worker's log lines."""

from __future__ import annotations

import json
import signal

import psutil
import pytest

from tests.contract.gateway.gateway_process import gateway_env, running_gateway_process
from tests.support.polling import until
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


def _count(events: list[str], start: str) -> int:
    """How many of the logged `events` begin with `start`."""
    return sum(event.startswith(start) for event in events)
