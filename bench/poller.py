"""Poll GET /healthz every N ms from its own process and record each answer's latency.

Run as ``python -m bench.poller URL INTERVAL_MS SECONDS OUT.json``. One keep-alive connection
(re-opened after a failure), a 5 s timeout per poll; a poll that fails or times out is counted
as a failure and its time as the timeout.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit


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
        tick += interval_ms / 1000
        delay = tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            tick = time.perf_counter()  # a slow answer: restart the schedule, no burst
    Path(out).write_text(json.dumps({"latencies": latencies, "failures": failures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
