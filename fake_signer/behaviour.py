"""How the fake behaves like an HSM-backed service: latency, capacity, random errors, faults.

Everything here is run-time state owned by one process and changed through `PUT /_control`.
Randomness (latency draws, error rate) comes from one `random.Random`, seeded by `--seed`, so a
sequence of requests sent one after another gets the same latencies and errors on every run.

Fault spec grammar (header `X-Fake-Signer-Fault` or `_control` `fault`): `kind[=arg][;key=value]...`

    delay=<ms>                     extra latency before answering normally (at most 10 min)
    status=<code>[;retry-after=<s>] plain-text error with that status (whole seconds);
                                   204, 205 and 304 bare, without content or Content-Type
    reset                          close the TCP connection with a RST, no response
    hang                           never answer (until the client gives up or the server stops)
    malformed[=truncated|shape]    200 whose body is not the contract JSON
    bad-signature                  a credential whose signature does not verify
    wrong-kid                      a credential signed with the right key, carrying another kid
                                   (these two only where a signature is answered: not by
                                   `/prepare_issue`, which passes a `_control` one by)
    slow-body=<ms>                 200 whose body trickles out over that many ms (at most 10 min)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fake_signer.settings import (
    MAX_LATENCY_MS,
    FakeSignerSettings,
    LatencyDistribution,
    Overflow,
)

FAULT_KINDS = frozenset(
    {"delay", "status", "reset", "hang", "malformed", "bad-signature", "wrong-kid", "slow-body"}
)
_ARG_REQUIRED = frozenset({"delay", "status", "slow-body"})
_NO_ARG = frozenset({"reset", "hang", "bad-signature", "wrong-kid"})
#: Faults that alter a signature or its kid: they apply only to answers that carry a signature.
SIGNATURE_FAULTS = frozenset({"bad-signature", "wrong-kid"})
MALFORMED_VARIANTS = frozenset({"truncated", "shape"})
#: The most digits a `retry-after` takes: up to 9,999,999,999 s (317 years), past any wait a
#: client honours, and a header of a sane length (a 5,000-digit one was sent as given).
MAX_RETRY_AFTER_DIGITS = 10


class FaultSpecError(ValueError):
    """A fault spec that does not follow the grammar."""


@dataclass(frozen=True)
class FaultSpec:
    """One parsed fault: its kind, numeric or word argument, and `key=value` options."""

    kind: str
    arg: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Parse `kind[=arg][;key=value]...`, checking kind, argument and options."""
        parts = [part.strip() for part in text.split(";")]
        kind, _, arg = parts[0].partition("=")
        kind = kind.strip().lower()
        if kind not in FAULT_KINDS:
            raise FaultSpecError(f"unknown fault kind {kind!r}")
        options: dict[str, str] = {}
        for part in parts[1:]:
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise FaultSpecError(f"fault option {part!r} is not key=value")
            options[key.strip().lower()] = value.strip()
        spec = cls(kind, arg.strip() or None, options)
        spec._check()
        return spec

    def _check(self) -> None:
        if self.kind in _ARG_REQUIRED and self.arg is None:
            raise FaultSpecError(f"fault {self.kind} needs an argument")
        if self.kind in _NO_ARG and self.arg is not None:
            raise FaultSpecError(f"fault {self.kind} takes no argument")
        allowed = {"retry-after"} if self.kind == "status" else set()
        if unknown := set(self.options) - allowed:
            raise FaultSpecError(f"fault {self.kind} has unknown options {sorted(unknown)}")
        if self.kind in {"delay", "slow-body"}:
            _number(self.arg, self.kind)
        elif self.kind == "status":
            # ASCII digits and a final status: after a 1xx the client would wait for an answer
            # that never comes.
            code = _status_code(self.arg or "")
            if code is None or not 200 <= code <= 599:  # noqa: PLR2004
                raise FaultSpecError(f"status {self.arg!r} is not a final HTTP status (200-599)")
            # Sent as is: RFC 9110 delay-seconds are digits only, and a client (the gateway's
            # `parse_retry_after` too) ignores "1.5" or "1e3", so such a test would test nothing.
            seconds = self.options.get("retry-after")
            if seconds is not None and not _digits(seconds):
                raise FaultSpecError(f"retry-after {seconds!r} is not a whole number of seconds")
            if seconds is not None and len(seconds) > MAX_RETRY_AFTER_DIGITS:
                raise FaultSpecError(
                    f"retry-after of {len(seconds)} digits: at most {MAX_RETRY_AFTER_DIGITS}"
                )
        elif self.kind == "malformed" and self.arg not in {None, *MALFORMED_VARIANTS}:
            raise FaultSpecError(f"malformed variant {self.arg!r} is not one of truncated, shape")

    @property
    def milliseconds(self) -> float:
        """The argument of `delay` and `slow-body`, in milliseconds."""
        return _number(self.arg, self.kind)

    @property
    def status(self) -> int:
        """The status code of a `status` fault."""
        return _status_code(self.arg or "") or 0

    def __str__(self) -> str:
        """The spec in its textual form."""
        text = self.kind if self.arg is None else f"{self.kind}={self.arg}"
        return ";".join([text, *(f"{k}={v}" for k, v in self.options.items())])


def _digits(text: str) -> bool:
    """Whether `text` is ASCII digits only (`isdigit()` alone also takes "²" or "٣")."""
    return text.isascii() and text.isdigit()


def _status_code(text: str) -> int | None:
    """The value of ASCII digits of at most 3 significant digits, else None.

    Longer ones are no status, and `int()` refuses more than 4,300 digits with a ValueError.
    """
    significant = text.lstrip("0")
    if not _digits(text) or len(significant) > 3:  # noqa: PLR2004
        return None
    return int(significant or "0")


#: A decimal number in ASCII: `float()` alone also takes "1_000", "٣" or "nan".
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number(text: str | None, what: str) -> float:
    if text is None or _DECIMAL.fullmatch(text) is None:
        raise FaultSpecError(f"{what} needs a number, got {text!r}")
    value = float(text)
    if not math.isfinite(value) or not 0 <= value <= MAX_LATENCY_MS:
        raise FaultSpecError(f"{what} must be a number of ms from 0 to {MAX_LATENCY_MS:.0f}")
    return value


def _log1p_square(jitter: float, mean: float) -> float:
    """`log(1 + (jitter / mean)²)`, also where the ratio or its square is past a double.

    A tiny positive mean (1e-300 ms) beside a jitter raised OverflowError, answered as aiohttp's
    own 500, or drew NaN; past 1e150, log1p(r²) is 2·log(r) to the last bit.
    """
    log_ratio = math.log(jitter) - math.log(mean)
    if log_ratio < _LOG_RATIO_SQUARE_FITS:
        return math.log1p((jitter / mean) ** 2)
    return 2 * log_ratio


#: Below this natural log of jitter / mean, the ratio squared is a finite double.
_LOG_RATIO_SQUARE_FITS = math.log(1e150)


class CapacityGate:
    """At most `capacity` signings in flight; the rest wait in FIFO order or are turned away.

    Also the single source of the in-flight, peak and queued figures `/_stats` reports.
    """

    def __init__(self, capacity: int | None) -> None:
        """Start with no signing in flight."""
        self._capacity = capacity
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.in_flight = 0
        self.peak = 0

    @property
    def capacity(self) -> int | None:
        """Maximum concurrent signings, `None` for unlimited."""
        return self._capacity

    @capacity.setter
    def capacity(self, value: int | None) -> None:
        self._capacity = value
        self._wake()

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    def _has_room(self) -> bool:
        return self._capacity is None or self.in_flight < self._capacity

    def _take(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def try_acquire(self) -> bool:
        """Take a slot now if one is free and nobody queues ahead."""
        if self._has_room() and not self._waiters:
            self._take()
            return True
        return False

    async def acquire(self) -> None:
        """Wait for a slot in arrival order."""
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as we were cancelled: pass it on.
                self.release()
            else:
                # `_wake` may already have dropped this cancelled waiter from the queue.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back, handing it to the longest waiter if any."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._has_room():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)

    def reset_peak(self) -> None:
        """Start peak tracking again from the current in-flight count."""
        self.peak = self.in_flight


class ControlUpdate(BaseModel):
    """Body of `PUT /_control`; every field optional, absent fields keep their value.

    Numbers must be JSON numbers (`strict`): pydantic's lax mode would read `true` as capacity 1
    or an error rate of 1, and "200" as a latency.
    """

    # The wire names only: `latency_ms` and the other Python names are unknown fields.
    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(
        default=None, alias="latencyMs", ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False, strict=True
    )
    jitter_ms: float | None = Field(
        default=None, alias="jitterMs", ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False, strict=True
    )
    latency_distribution: LatencyDistribution | None = Field(
        default=None, alias="latencyDistribution"
    )
    capacity: int | None = Field(default=None, ge=1, strict=True)
    overflow: Overflow | None = None
    error_rate: float | None = Field(default=None, alias="errorRate", ge=0, le=1, strict=True)
    fault: str | None = None
    fault_count: int | None = Field(default=None, alias="faultCount", ge=-1, strict=True)
    seed: int | None = Field(default=None, strict=True)

    @field_validator("latency_distribution", "overflow", mode="before")
    @classmethod
    def _text_only(cls, value: object) -> object:
        # Before the enum sees it: refusing a non-string, the enum quotes its repr, which for
        # arrays nested 1,000 deep (JSON takes them) is past the recursion limit, a 500.
        if value is not None and not isinstance(value, str):
            raise ValueError("must be a string")
        return value


def _check_fault_count(count: int | None, fault: FaultSpec | None) -> None:
    """Refuse a `faultCount` that would fault no request (it would be a silent no-op).

    Raises:
        ValueError: `count` is 0, or is given while no fault is given or pending.
    """
    if count == 0:
        raise ValueError('faultCount 0 would fault no request: send "fault": null to clear it')
    if count is not None and fault is None:
        raise ValueError('faultCount needs a fault: give "fault" with it, or set one first')


class Behaviour:
    """The run-time behaviour of one fake signer: what `PUT /_control` reads and writes."""

    def __init__(self, settings: FakeSignerSettings) -> None:
        """Take the initial behaviour from the process settings."""
        self.latency_ms = settings.latency_ms
        self.jitter_ms = settings.jitter_ms
        self.distribution = settings.latency_distribution
        self.overflow = settings.overflow
        self.error_rate = settings.error_rate
        self.gate = CapacityGate(settings.capacity)
        self.rng = random.Random(settings.seed)  # noqa: S311 - simulation, not security
        self.fault: FaultSpec | None = None
        self.fault_count = 0

    def latency_seconds(self, extra_ms: float = 0.0) -> float:
        """Draw one signing latency from the configured distribution."""
        mean, jitter = self.latency_ms, self.jitter_ms
        uniform = self.distribution is LatencyDistribution.UNIFORM
        if (
            self.distribution is LatencyDistribution.FIXED
            or jitter == 0
            or (mean == 0 and not uniform)
        ):
            ms = mean  # a lognormal draw needs a positive mean
        elif uniform:
            ms = max(0.0, self.rng.uniform(mean - jitter, mean + jitter))
        else:
            # Parameters chosen so the draws have mean `mean` and standard deviation `jitter`.
            sigma2 = _log1p_square(jitter, mean)
            ms = self.rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))
        # Bounded like every latency given: latency + jitter, or a lognormal tail, could be more.
        return (min(ms, MAX_LATENCY_MS) + extra_ms) / 1000

    def random_error(self) -> bool:
        """Whether this signing fails with a simulated 500 (draws only when a rate is set)."""
        return self.error_rate > 0 and self.rng.random() < self.error_rate

    def take_fault(self, *, signs: bool = True) -> FaultSpec | None:
        """The `_control` fault for this request, counting it down.

        A request that `signs` nothing leaves a signature fault pending for the next that does.
        """
        fault = self.fault
        if fault is None or (not signs and fault.kind in SIGNATURE_FAULTS):
            return None
        if self.fault_count > 0:
            self.fault_count -= 1
            if self.fault_count == 0:
                self.fault = None
        return fault

    def update(self, body: Any) -> None:  # noqa: ANN401 - untrusted JSON, validated here
        """Apply a `PUT /_control` body.

        Raises:
            ValueError: the body or its fault spec is invalid (nothing is changed then).
        """
        try:
            update = ControlUpdate.model_validate(body)
        except ValidationError as exc:
            raise ValueError(str(exc)) from exc
        given = update.model_fields_set
        fault = FaultSpec.parse(update.fault) if update.fault is not None else None
        _check_fault_count(update.fault_count, fault if "fault" in given else self.fault)
        for name in ("latency_ms", "jitter_ms", "error_rate", "overflow"):
            # An explicit null means "leave as is" for these: they have no null state.
            if getattr(update, name) is not None:
                setattr(self, name, getattr(update, name))
        if update.latency_distribution is not None:
            self.distribution = update.latency_distribution
        if "seed" in given:
            self.rng.seed(update.seed)
        if "capacity" in given:
            self.gate.capacity = update.capacity
        self._set_fault(
            fault if "fault" in given else self.fault, "fault" in given, update.fault_count
        )

    def _set_fault(self, fault: FaultSpec | None, replaced: bool, count: int | None) -> None:  # noqa: FBT001
        if replaced:
            self.fault_count = 0 if fault is None else 1
        self.fault = fault
        if count is not None and fault is not None:
            self.fault_count = count
        if self.fault_count == 0:
            self.fault = None

    def describe(self) -> dict[str, Any]:
        """The current control state, as `PUT /_control` returns it."""
        return {
            "latencyMs": self.latency_ms,
            "jitterMs": self.jitter_ms,
            "latencyDistribution": self.distribution.value,
            "capacity": self.gate.capacity,
            "overflow": self.overflow.value,
            "errorRate": self.error_rate,
            "fault": None if self.fault is None else str(self.fault),
            "faultCount": self.fault_count,
        }
