"""The /healthz poller counts the ticks a slow answer made it skip (no coordinated omission)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench import poller, scenarios


def test_a_poll_slower_than_the_interval_stands_for_the_ticks_it_skipped() -> None:
    """A 35 ms answer on a 10 ms schedule: the ticks at 10, 20 and 30 ms would have seen 25/15/5."""
    assert poller.with_skipped_ticks([0.035], 0.010) == pytest.approx([0.035, 0.025, 0.015, 0.005])


def test_polls_within_the_interval_are_recorded_as_they_are() -> None:
    """Answers up to the interval skip no tick; one of exactly 2 intervals skips just one."""
    assert poller.with_skipped_ticks([0.001, 0.0099, 0.010], 0.010) == [0.001, 0.0099, 0.010]
    assert poller.with_skipped_ticks([0.020], 0.010) == pytest.approx([0.020, 0.010])


def test_each_poll_keeps_its_own_skipped_ticks_in_order() -> None:
    """The correction is per poll; the polls sent stay in their order, each followed by its own."""
    values = poller.with_skipped_ticks([0.002, 0.0215, 0.003], 0.010)
    assert values == pytest.approx([0.002, 0.0215, 0.0115, 0.0015, 0.003])


@pytest.mark.parametrize(
    ("now", "expected"),
    [(0.0012, 0.010), (0.0099, 0.010), (0.0101, 0.020), (0.0355, 0.040), (0.0951, 0.100)],
)
def test_the_schedule_goes_on_at_the_first_tick_ahead_keeping_its_phase(
    now: float, expected: float
) -> None:
    """After a poll sent at 0 answers at `now`, the next is sent on the 10 ms grid, never late."""
    assert poller.next_tick(0.0, now, 0.010) == pytest.approx(expected)
    assert poller.next_tick(1.0, 1.0 + now, 0.010) == pytest.approx(1.0 + expected)


def test_poll_figures_judge_the_corrected_latencies_and_keep_the_raw_ones() -> None:
    """A stall of 95 ms among 98 fast polls: the raw p99 hides it, the corrected p99 does not."""
    polls = {"latencies": [0.002] * 98 + [0.095, 0.003], "failures": 0, "interval_s": 0.010}
    figures = scenarios.poll_figures(polls)
    assert figures["polls"] == 100
    assert figures["skipped_ticks"] == 9
    assert figures["raw"] == {"p50_ms": 2.0, "p99_ms": 3.0, "max_ms": 95.0}
    assert figures["p99_ms"] == 85.0  # 109 values: the 9 skipped ticks saw 85, 75, .., 5 ms
    assert figures["max_ms"] == 95.0
    assert figures["p50_ms"] == 2.0


def test_polls_without_a_fixed_schedule_are_figured_as_they_were_sent() -> None:
    """The probe-port prober sleeps between probes instead of keeping a schedule: no correction."""
    figures = scenarios.poll_figures({"latencies": [0.002] * 99 + [0.095], "failures": 1})
    assert figures == {
        "polls": 100,
        "failures": 1,
        "p50_ms": 2.0,
        "p99_ms": 2.0,
        "max_ms": 95.0,
    }


@pytest.mark.parametrize("polls", [100, 2099, 2100])
def test_p99_is_a_latency_at_least_99_percent_of_the_polls_kept_within(polls: int) -> None:
    """Just over 1 % of polls at 60 ms: their p99 is 60 ms, so "p99 <= 50 ms" is missed.

    2,099 polls is what 21 s at 10 ms gives: 21 of them at 60 ms are 1.0005 %.
    """
    slow = polls // 100 + 1
    latencies = [0.005] * (polls - slow) + [0.060] * slow
    figures = scenarios.poll_figures({"latencies": latencies, "failures": 0})
    assert figures["p99_ms"] == 60.0, f"{slow} of {polls} polls took 60 ms"
    within = [0.005] * (polls - slow + 1) + [0.060] * (slow - 1)  # at most 1 % slow
    assert scenarios.poll_figures({"latencies": within, "failures": 0})["p99_ms"] == 5.0


def test_the_max_is_the_slowest_poll_however_many_there_were() -> None:
    """Of 2,000 polls, the slowest (300 ms) is the max, not the one just below it."""
    latencies = [0.005] * 1998 + [0.2, 0.3]
    assert scenarios.poll_figures({"latencies": latencies, "failures": 0})["max_ms"] == 300.0


#: The toy server's stall: its handlers wait this long, once every `STALL_EVERY_S`.
STALL_S = 0.095
STALL_EVERY_S = 1.0
POLL_SECONDS = 3.0


@pytest.fixture
def stalling_server() -> Iterator[str]:
    """A loopback /healthz that answers at once except in a 95 ms stall once a second."""
    stalled = threading.Lock()
    stop = threading.Event()

    class Health(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the poller expects
        disable_nagle_algorithm = True  # head and body go out at once, not 40 ms apart

        def do_GET(self) -> None:
            with stalled:  # held by the staller for the length of a stall
                pass
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base name
            """Quiet: the test reads the poller's figures, not an access log."""

    def stall() -> None:
        while not stop.wait(STALL_EVERY_S - STALL_S):
            with stalled:
                stop.wait(STALL_S)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threads = [threading.Thread(target=server.serve_forever), threading.Thread(target=stall)]
    for thread in threads:
        thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        stop.set()
        server.shutdown()
        for thread in threads:
            thread.join()
        server.server_close()


def test_the_poller_counts_the_ticks_a_stalled_server_made_it_skip(
    stalling_server: str, tmp_path: Path
) -> None:
    """Stalls of 95 ms in 3 s of 10 ms polls fail p99 <= 50 ms once the skipped ticks count."""
    out = tmp_path / "polls.json"
    command = [sys.executable, "-m", "bench.poller", stalling_server, "10", f"{POLL_SECONDS:g}"]
    subprocess.run(  # noqa: S603 - our own interpreter and module
        [*command, str(out)], check=True, timeout=POLL_SECONDS + 30
    )
    figures = scenarios.poll_figures(json.loads(out.read_text()))
    assert figures["failures"] == 0
    assert figures["max_ms"] > 50, figures  # some tick fell early in a stall
    assert figures["p99_ms"] > 50, figures
    # Each stall the poll ran into skipped the ticks inside it: ~9 per stall, >= 2 stalls.
    assert figures["skipped_ticks"] >= 2 * 5, figures
    # A skipped tick saw less than the poll that held it up: the raw polls keep the maximum.
    assert figures["raw"]["max_ms"] == figures["max_ms"], figures
    # Every tick of the fixed schedule is either polled or counted as skipped.
    ticks = POLL_SECONDS / 0.010
    assert 0.8 * ticks <= figures["polls"] + figures["skipped_ticks"] <= ticks + 2, figures
