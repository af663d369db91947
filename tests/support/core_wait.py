"""Latencies as the gateway made them: wall time less the time its threads waited for a core.

The test machine is shared (test client, gateway, fake signers, load clients, and whatever else
CI runs on two cores), so a request's wall time also holds the time the gateway's loop thread,
or the client's, was ready to run but had no core: the machine's load, not the gateway's doing.
Linux counts that time per thread (``/proc/<pid>/task/<tid>/schedstat``, second field, in ns),
so `Latencies.timed` subtracts what the watched threads waited for a core while a request ran.
What is left is the time they spent running or blocked, which is exactly what a held loop adds:
a blocking call blocks, a CPU burst runs. The gateway's own loop-lag metric would not do: it
times a sleep with the wall clock, so it counts waiting for a core the same way, and it does not
see the path a probe takes (accept, parse, answer).

The subtraction can overshoot by a wait already under way when a request starts (it is counted
whole when it ends), and by two watched threads waiting at once (a client waiting for its answer
is asleep, not runnable, so rarely). On a busy machine a wait is a few scheduler slices, far
below a held loop's hundreds of ms; on one overloaded many times over, single waits of 100 ms
and more happen, and one request can lose that much of a hold (a 300 ms hold was once timed at
150 ms beside two busy loops and other test runs; its four siblings at 297-306 ms).

Which threads to watch: each thread whose wait for a core delays the answer, once. A served
gateway runs its event loop, the probe port's listener included, on its main thread
(`main_thread`); the client is the thread that times the request (`THIS_THREAD`, which names
whichever thread reads it). An in-process gateway (ASGI transport) runs on the test's own loop:
client and gateway are one thread, watched once, as `THIS_THREAD`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: The schedstat of the thread that reads it.
THIS_THREAD = Path("/proc/thread-self/schedstat")


def main_thread(pid: int) -> Path:
    """The schedstat of process `pid`'s main thread (a served gateway's event loop)."""
    return Path(f"/proc/{pid}/task/{pid}/schedstat")


def core_wait(schedstat: Path) -> float:
    """Seconds a thread has spent runnable but waiting for a core (field 2 of its schedstat)."""
    return int(schedstat.read_text().split()[1]) / 1e9


@dataclass
class Latencies:
    """Wall times of timed requests, and what the watched threads waited for a core in each."""

    threads: tuple[Path, ...]
    wall: list[float] = field(default_factory=list)
    core_wait: list[float] = field(default_factory=list)

    def _waited(self) -> float:
        return sum(core_wait(thread) for thread in self.threads)

    @contextmanager
    def timed(self, idle: float = 0.0) -> Iterator[None]:
        """Record the block's wall time, less `idle`, and the threads' core wait during it.

        `idle`: seconds of the block that are no latency, a sleep it starts with; a loop held
        past the sleep's end still counts, as the sleep ending late (a wait for a core during
        the sleep that delayed nothing is subtracted too: at most `idle`). Enter and leave it
        on the same thread (`THIS_THREAD` is whichever thread reads it). Nothing is recorded
        when the block raises.
        """
        waited = self._waited()
        started = time.perf_counter()
        yield
        took = time.perf_counter() - started - idle
        waited = self._waited() - waited
        self.wall.append(took)
        self.core_wait.append(min(waited, took))

    def served(self) -> list[float]:
        """Each latency less its core wait, sorted."""
        return sorted(took - waited for took, waited in zip(self.wall, self.core_wait, strict=True))

    def slowest(self, count: int = 5) -> str:
        """The `count` slowest, less core waits, with their wall time and wait, in ms."""
        timed = sorted(zip(self.wall, self.core_wait, strict=True), key=lambda t: t[0] - t[1])
        return ", ".join(
            f"{(took - waited) * 1000:.1f} (wall {took * 1000:.1f}, waited {waited * 1000:.1f})"
            for took, waited in timed[-count:]
        )
