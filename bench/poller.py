"""Poll GET /healthz every N ms from its own process and record each answer's latency.

Run as ``python -m bench.poller URL INTERVAL_MS SECONDS OUT.json``. One keep-alive connection
(re-opened after a failure), a 5 s timeout per poll; a poll that fails or times out is counted
as a failure and its time as the timeout.

The polls keep a fixed schedule, one tick every interval from the start. A poll still waiting
for its answer when the next ticks come round cannot send them: the poller goes on at the first
tick still ahead (no burst), and the ticks in between are not sent. Left at that, a stall would
count once however long it lasted, and every tick it swallowed would vanish from the figures
(coordinated omission). So the figures count them too (`with_skipped_ticks`): each skipped tick
with the latency it would have seen, as HdrHistogram's ``recordValueWithExpectedInterval`` does.
"""

from __future__ import annotations

import http.client
import json
import math
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit


def with_skipped_ticks(latencies: list[float], interval: float) -> list[float]:
    """`latencies` of polls on a fixed `interval`, each followed by those of the ticks it skipped.

    A poll answered after `latency` held up the ticks `k * interval` after it was sent, for
    k = 1, 2, .. while that is less than `latency`; sent on time, each of them would have been
    answered when the poll was, at the earliest, so it would have seen `latency - k * interval`.
    """
    values = []
    for latency in latencies:
        values.append(latency)
        k = 1
        while (missed := latency - k * interval) > 0:
            values.append(missed)
            k += 1
    return values


def next_tick(tick: float, now: float, interval: float) -> float:
    """The first tick of the schedule (`tick` plus whole intervals) after `now`.

    The ticks a slow answer let pass are not sent late in a burst; `with_skipped_ticks`
    counts them from its latency.
    """
    return tick + interval * max(1, math.floor((now - tick) / interval) + 1)


def main() -> int:
    url, interval_ms, seconds, out = (
        sys.argv[1],
        float(sys.argv[2]),
        float(sys.argv[3]),
        sys.argv[4],
    )
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:
        raise SystemExit(f"bench.poller: {url!r} has no host")
    interval = interval_ms / 1000
    conn: http.client.HTTPConnection | None = None
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    tick = start
    while time.perf_counter() - start < seconds:
        began = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, parts.port, timeout=5)
            conn.request("GET", parts.path)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures += 1
            latencies.append(time.perf_counter() - began)
        except (OSError, http.client.HTTPException):
            failures += 1
            latencies.append(time.perf_counter() - began)
            if conn is not None:
                conn.close()
            conn = None
        now = time.perf_counter()
        tick = next_tick(tick, now, interval)
        time.sleep(max(0.0, tick - now))
    Path(out).write_text(
        json.dumps({"latencies": latencies, "failures": failures, "interval_s": interval})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
