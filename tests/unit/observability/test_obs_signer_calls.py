"""Outcome slugs of signer calls and what one observed call records."""

from __future__ import annotations

import asyncio
import time
import weakref

import pytest

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.signer_calls import observe_signer_call, outcome_of
from signing_gateway.observability.telemetry import Telemetry, telemetry_var
from signing_gateway.signers.errors import (
    SignerConnectError,
    SignerConnectionLostError,
    SignerMalformedResponseError,
    SignerRejectedError,
    SignerServerError,
    SignerThrottledError,
    SignerTimeoutError,
)

KW = {"signer": "eu", "endpoint": "get_credential"}


@pytest.mark.parametrize(
    ("exc", "slug"),
    [
        (None, "ok"),
        (SignerConnectError("x", **KW), "connect_error"),
        (SignerTimeoutError("x", **KW), "timeout"),
        (SignerConnectionLostError("x", **KW), "connection_lost"),
        (SignerThrottledError("x", **KW, status_code=429, retry_after=None), "throttled"),
        (SignerRejectedError("x", **KW, status_code=400), "rejected"),
        (SignerServerError("x", **KW, status_code=500), "server_error"),
        (SignerMalformedResponseError("x", **KW, status_code=200), "malformed"),
        (asyncio.CancelledError(), "cancelled"),
        (RuntimeError("bug"), "error"),
    ],
)
def test_outcome_slugs(exc, slug):
    """Each failure class maps to its own bounded outcome label."""
    assert outcome_of(exc) == slug


def test_outside_a_request_nothing_is_recorded():
    """Without bound telemetry (start-up, tests of clients alone) a call records nothing."""
    headers: dict[str, str] = {}
    with observe_signer_call(signer="eu", endpoint="keys", headers=headers):
        pass
    assert headers == {}


def test_a_failed_call_is_in_flight_while_running_then_counted():
    """In flight rises during the call and falls after; the failure is counted with its slug."""
    metrics = GatewayMetrics()
    in_flight_during: list[float | None] = []

    def failing_call() -> None:
        with observe_signer_call(signer="eu", endpoint="get_credential", headers={}):
            in_flight_during.append(
                metrics.registry.get_sample_value("gateway_signer_in_flight", {"signer": "eu"})
            )
            raise SignerTimeoutError("slow", **KW)

    token = telemetry_var.set(Telemetry(metrics))
    try:
        with pytest.raises(SignerTimeoutError):
            failing_call()
    finally:
        telemetry_var.reset(token)
    assert in_flight_during == [1]
    get = metrics.registry.get_sample_value
    assert get("gateway_signer_in_flight", {"signer": "eu"}) == 0
    assert get("gateway_signer_calls_total", {**KW, "outcome": "timeout"}) == 1
    assert get("gateway_signer_call_duration_seconds_count", {**KW, "outcome": "timeout"}) == 1


def test_the_duration_sample_is_the_time_the_call_took():
    """Measured from the call's start: neither 0 nor the time since the process began."""
    metrics = GatewayMetrics()
    token = telemetry_var.set(Telemetry(metrics))
    try:
        with observe_signer_call(signer="eu", endpoint="get_credential", headers={}):
            time.sleep(0.05)
    finally:
        telemetry_var.reset(token)
    labels = {**KW, "outcome": "ok"}
    took = metrics.registry.get_sample_value("gateway_signer_call_duration_seconds_sum", labels)
    assert took is not None
    assert 0.05 <= took < 5


class _Headers(dict[str, str]):
    """Outgoing headers that can be watched for being freed."""


def test_the_outgoing_headers_are_not_kept_through_the_call():
    """Once the call is under way its headers are let go: none is held per call in flight.

    The request holds its own copy; a second one kept here would cost every request waiting
    on a signer its headers again.
    """
    headers = _Headers(traceparent="x")
    freed = weakref.ref(headers)
    with observe_signer_call(signer="eu", endpoint="get_credential", headers=headers):
        del headers
        assert freed() is None


class _BrokenTracer:
    """A tracer whose every span fails to start."""

    def start_signer_call(self, *_: object, **__: object) -> None:
        raise RuntimeError("tracer broken")


def test_a_tracer_failing_to_open_the_span_leaves_no_call_in_flight():
    """`__exit__` does not run when `__enter__` raises: nothing may be counted before the span."""
    metrics = GatewayMetrics()
    token = telemetry_var.set(Telemetry(metrics, _BrokenTracer()))  # type: ignore[arg-type]
    try:
        with (
            pytest.raises(RuntimeError, match="tracer broken"),
            observe_signer_call(signer="eu", endpoint="get_credential", headers={}),
        ):
            pass
    finally:
        telemetry_var.reset(token)
    in_flight = metrics.registry.get_sample_value("gateway_signer_in_flight", {"signer": "eu"})
    assert not in_flight  # never counted (None) or back to 0
