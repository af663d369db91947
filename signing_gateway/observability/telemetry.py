"""The telemetry of the app serving the current request, reachable from deep call sites.

The request-metrics middleware binds the app's `Telemetry` (its metrics, and its tracer when
tracing is on) in a context variable for the duration of each request. Signer calls and
credential checks made while serving that request, including those in `asyncio.TaskGroup`
children (tasks copy the context they are created in), record into the right app's registry
without every layer passing a metrics object down. Outside a request nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from signing_gateway.observability.metrics import GatewayMetrics

if TYPE_CHECKING:
    from signing_gateway.observability.tracing import GatewayTracer


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One app's metrics and, when tracing is enabled, its tracer."""

    metrics: GatewayMetrics
    tracer: GatewayTracer | None = None


telemetry_var: ContextVar[Telemetry | None] = ContextVar("telemetry", default=None)


def record_credential_rejection(*, signer: str, reason: str) -> None:
    """Count a signer credential that failed verification and was withheld."""
    telemetry = telemetry_var.get()
    if telemetry is not None:
        telemetry.metrics.credential_rejections.labels(signer, reason).inc()


def record_commitment_proof_verdict(*, refused: bool) -> None:
    """Count a check of the app's proofs of U that reached a verdict, and a refusal if it failed.

    Both counters move here, together, so the refusals never outnumber the checks.
    """
    telemetry = telemetry_var.get()
    if telemetry is not None:
        telemetry.metrics.commitment_proofs_checked.inc()
        if refused:
            telemetry.metrics.commitment_proof_refusals.inc()


def record_stoken_refusal(*, cause: str) -> None:
    """Count a stoken refused 401 `stoken-invalid`, by why (`errors.StokenRefusal`)."""
    telemetry = telemetry_var.get()
    if telemetry is not None:
        telemetry.metrics.stoken_refusals.labels(cause).inc()


#: Flushes to run before a process ends by a signal's default action, which skips `atexit`
#: (a `serve --workers` worker stopped by a second signal, serving.py): the tracer provider's
#: bounded send of the spans it still holds (`tracing.ExitFlush`). Kept here, where no
#: OpenTelemetry is imported.
_exit_flushes: list[Callable[[], object]] = []


def add_exit_flush(flush: Callable[[], object]) -> None:
    """Have `flush_telemetry` run `flush` (which must return within a bound of its own)."""
    _exit_flushes.append(flush)


def flush_telemetry() -> None:
    """Run the exit flushes now: for a process about to end without running `atexit` hooks."""
    for flush in _exit_flushes:
        flush()
