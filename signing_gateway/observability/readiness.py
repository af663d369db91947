"""Readiness kept by a background prober, so /readyz never waits on a signer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from prometheus_client import Gauge

from signing_gateway.runtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]
ProbeStatus = Literal["unknown", "up", "down"]


@dataclass(slots=True)
class DependencyState:
    """What the prober last learned about one dependency."""

    required: bool
    status: ProbeStatus = "unknown"
    checked_at: float | None = None
    consecutive_failures: int = 0
    error: str | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        """Caller-safe view: status, age of the last check, error class (never a URL)."""
        return {
            "status": self.status,
            "required": self.required,
            "lastCheckedSecondsAgo": None
            if self.checked_at is None
            else round(now - self.checked_at, 3),
            "consecutiveFailures": self.consecutive_failures,
            "error": self.error,
        }


def _up(state: DependencyState) -> float:
    return 1.0 if state.status == "up" else 0.0


class ReadinessMonitor:
    """Probes each dependency every `interval` seconds in the background, each on its own."""

    def __init__(
        self,
        probes: Mapping[str, tuple[Probe, bool]],
        *,
        interval: float,
        timeout: float,
    ) -> None:
        """`probes` maps a name to (probe, required); a probe raises when its target is down."""
        self._probes = {name: probe for name, (probe, _) in probes.items()}
        self.states = {name: DependencyState(required) for name, (_, required) in probes.items()}
        self._interval = interval
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self.draining = False
        self._details: dict[str, Callable[[], Any]] = {}

    def export(self, gauge: Gauge) -> None:
        """Show each dependency in `gauge` (labels: dependency, required): 1 while up, else 0.

        Read at every scrape. `/readyz` answers the orchestrator, which takes a pod that is
        not ready out of service and so out of the traffic every other metric counts: when a
        required dependency is down for every pod, this is what still says so.
        """
        for name, state in self.states.items():
            child = gauge.labels(name, "true" if state.required else "false")
            child.set_function(partial(_up, state))

    def add_detail(self, name: str, provider: Callable[[], Any]) -> None:
        """Show `provider()` under `name` in every /readyz body (e.g. event-loop lag)."""
        self._details[name] = provider

    @property
    def ready(self) -> bool:
        """True while not draining and every required dependency answered its last probe."""
        return not self.draining and all(
            s.status == "up" for s in self.states.values() if s.required
        )

    def snapshot(self) -> dict[str, Any]:
        """The /readyz body."""
        now = time.monotonic()
        return {
            "status": "ready" if self.ready else "not-ready",
            "draining": self.draining,
            "dependencies": {name: s.to_json(now) for name, s in self.states.items()},
            **{name: provider() for name, provider in self._details.items()},
        }

    async def _probe_one(self, name: str) -> None:
        state = self.states[name]
        failure: BaseException | None = None
        try:
            async with asyncio.timeout(self._timeout):
                await self._probes[name]()
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the prober is being stopped
            # The probe's own CancelledError (a client cancelled inside, not this task): let it
            # out and this dependency's watch would end, its last state shown ever after.
            failure = exc
        except Exception as exc:  # noqa: BLE001 - any failure means "down"; the class is kept
            failure = exc
        if failure is not None:
            if state.status != "down":
                # The reason: a signer's certificate refused, a disk full, ... (a timeout has none).
                reason = str(failure) or type(failure).__name__
                logger.warning("dependency down", extra={"dependency": name, "reason": reason})
            state.status = "down"
            state.consecutive_failures += 1
            state.error = type(failure).__name__
        else:
            if state.status == "down":
                logger.info("dependency up again", extra={"dependency": name})
            state.status = "up"
            state.consecutive_failures = 0
            state.error = None
        state.checked_at = time.monotonic()

    async def check_now(self) -> None:
        """Probe every dependency once, concurrently."""
        async with asyncio.TaskGroup() as group:
            for name in self._probes:
                group.create_task(self._probe_one(name))

    async def _watch(self, name: str) -> None:
        """Probe `name` every interval, on its own: a hung signer holds up no other's probe."""
        while True:
            await self._probe_one(name)
            await asyncio.sleep(self._interval)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for name in self._probes:
                group.create_task(self._watch(name))

    def start(self) -> None:
        """Start the background prober (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="readiness-prober")

    async def stop(self) -> None:
        """Stop the prober and wait for it to end."""
        await cancel_and_wait(self._task)
        self._task = None
