"""The gateway's own OTLP provider at exit: queued spans sent, but never a stop held up for them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from signing_gateway.observability.tracing import EXIT_FLUSH_SECONDS
from tests.support.otlp_collector import otlp_collector, silent_collector

REPO = Path(__file__).resolve().parents[3]
#: How long the child may take to end once its work is done: the flush bound, and room for a
#: loaded machine. The SDK's own exit handler waits 30 s for a collector that does not answer.
EXIT_ALLOWANCE = EXIT_FLUSH_SECONDS + 4.0

#: A process that builds the gateway's tracer (no provider of its own: the OTLP one is
#: installed), ends one span, prints the time, and exits with that span still queued.
CHILD = textwrap.dedent(
    """
    import time
    from signing_gateway.observability.tracing import build_tracer
    tracer = build_tracer("exit-flush-test")
    tracer.end_signer_call(tracer.start_signer_call("eu", "get_credential", {}), "ok")
    print(time.monotonic(), flush=True)
    """
)


def _run_child(collector_port: int) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run CHILD against a collector on `collector_port`; its result and seconds from done to exit.

    The export timeout is a minute, so an exit that waited for the export would show.
    """
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "60",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",  # nothing sent before the exit
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed script
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=True,
    )
    exited = time.monotonic()
    return result, exited - float(result.stdout.strip())


def test_a_collector_that_never_answers_does_not_hold_up_the_exit():
    """The queued span is given EXIT_FLUSH_SECONDS, then the process ends without it."""
    with silent_collector() as port:
        _result, exit_took = _run_child(port)
    assert exit_took < EXIT_ALLOWANCE, f"exit took {exit_took:.1f} s with the collector silent"


def test_spans_still_queued_at_exit_reach_a_collector_that_answers():
    """The bound cuts a stalled flush short, not a working one: the last span is sent."""
    with otlp_collector() as (port, received):
        _result, exit_took = _run_child(port)
    assert exit_took < EXIT_ALLOWANCE
    assert received.names() == ["signer eu get_credential"]
