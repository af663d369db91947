"""Gateway configuration: one settings object, read from `SIGNING_GATEWAY_*` environment variables.

Nested groups use `__` as delimiter, e.g. `SIGNING_GATEWAY_EU_SIGNER__URL`. Tests and the CLI
build `Settings(...)` with keyword arguments instead of patching the environment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    BaseModel,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from signing_gateway.domain.dcc import KeyUsage
from signing_gateway.domain.domestic import HOURS_MAX_DIGITS, MAX_VALID_FOR_HOURS, DomesticPolicy
from signing_gateway.issuance.store_settings import SessionStoreSettings
from signing_gateway.runtime.gc_tuning import YoungMode
from signing_gateway.security.settings import (
    FINITE_NUMBERS,
    AuditSettings,
    AuthSettings,
    FileSetting,
    LimitsSettings,
    NameSetting,
    absolute_http_url,
    is_loopback_host,
    plain_http_off_host,
)

#: Where a gateway in development looks for its signers when not told: local fake signers
#: (`fake-signer --role eu`, `--role domestic`: their default ports). Ports that nothing else
#: here listens on (the gateway takes 8080, its probe port 8081 in the image), so a forgotten URL
#: cannot point the gateway at itself. Production has no such default: it must name both signers.
DEV_EU_SIGNER_URL = "http://127.0.0.1:9081"
DEV_DOMESTIC_SIGNER_URL = "http://127.0.0.1:9082"
#: What a request head needs besides its bearer token: request line, Host, Content-Type and
#: Content-Length, X-Request-ID, and what a proxy adds (X-Forwarded-*, traceparent).
HEAD_ROOM_BYTES = 2048


class ResilienceSettings(BaseModel):
    """How hard the gateway leans on one signer: bulkhead, retries, retry budget, breaker.

    See docs/resilience.md for what each mechanism does and why the defaults are what they are.
    """

    model_config = FINITE_NUMBERS

    max_in_flight: PositiveInt = Field(
        64, description="Calls in flight to this signer at most (set it to the signer's capacity)"
    )
    max_pending: NonNegativeInt = Field(
        64, description="Calls that may wait for a free slot; beyond that, 503 at once (shed)"
    )
    max_wait_seconds: NonNegativeFloat = Field(
        0.5, description="Longest wait for a free slot before the call is shed with 503"
    )
    attempt_timeout_seconds: PositiveFloat = Field(
        10.0, description="Budget of one attempt (never more than the request's remaining budget)"
    )
    max_attempts: PositiveInt = Field(
        3, le=10, description="Attempts per signer call, the first one included"
    )
    max_retry_after_seconds: NonNegativeFloat = Field(
        2.0,
        description="Longest signer Retry-After the gateway waits out itself; a longer one is "
        "passed to the caller at once (fail fast instead of holding the request)",
    )
    backoff_base_seconds: PositiveFloat = Field(
        0.05, description="Exponential backoff: ceiling of the first retry's random delay"
    )
    backoff_max_seconds: PositiveFloat = Field(
        1.0, description="Exponential backoff: largest ceiling of a retry's random delay"
    )
    retry_budget_ratio: float = Field(
        0.2, ge=0, le=1, description="Retries allowed as a share of first attempts in the window"
    )
    retry_budget_min_per_second: NonNegativeFloat = Field(
        5.0, description="Retries per second allowed on top of the ratio (for quiet periods)"
    )
    retry_budget_window_seconds: PositiveFloat = Field(
        10.0, description="Window over which the retry budget counts attempts and retries"
    )
    breaker_consecutive_failures: PositiveInt = Field(
        5, description="Consecutive failed calls that open the breaker"
    )
    breaker_failure_rate: float = Field(
        0.5, gt=0, le=1, description="Failure share over the window that opens the breaker"
    )
    breaker_min_calls: PositiveInt = Field(
        20, description="Calls in the window before the failure rate is judged"
    )
    breaker_window_seconds: PositiveFloat = Field(
        10.0, description="Window of the breaker's failure rate"
    )
    breaker_open_seconds: PositiveFloat = Field(
        5.0, description="How long an open breaker refuses calls before probing"
    )
    breaker_trial_calls: PositiveInt = Field(
        2, description="Half-open: trial calls at a time; that many successes close it"
    )


class SignerSettings(BaseModel):
    """How to reach one downstream signer and how hard to lean on it."""

    model_config = FINITE_NUMBERS

    url: str = Field(description="Base URL of the signer, e.g. https://eu-signer.internal:8443")
    connect_timeout: PositiveFloat = Field(1.0, description="Seconds to establish a connection")
    read_timeout: PositiveFloat = Field(15.0, description="Seconds to wait for response bytes")
    write_timeout: PositiveFloat = Field(
        5.0,
        description="Seconds to send the request (transport httpx only: the aiohttp transport "
        "has no write timeout)",
    )
    pool_timeout: PositiveFloat = Field(5.0, description="Seconds to wait for a pooled connection")
    max_connections: PositiveInt = Field(
        256, description="Connections kept to this signer (its useful concurrency)"
    )
    keep_alive_seconds: PositiveFloat = Field(
        5.0,
        description="An idle connection to this signer is closed this many seconds after its "
        "last answer. Keep it shorter than the signer's own idle timeout (its server's or load "
        "balancer's keep-alive): a call sent on a connection the signer is closing fails "
        "without an answer, and one that may not be sent twice (a domestic issue) is then "
        "answered 502",
    )
    transport: Literal["httpx", "aiohttp"] = Field(
        "aiohttp", description="HTTP transport under the httpx client"
    )
    health_path: NameSetting = Field(
        "/healthz", min_length=1, description="Path the readiness prober GETs"
    )
    required: bool = Field(default=True, description="Readiness fails while this signer is down")
    ca_bundle: FileSetting | None = Field(
        None, description="PEM CA bundle to verify the signer's TLS"
    )
    client_cert: FileSetting | None = Field(
        None, description="PEM client certificate for mutual TLS"
    )
    client_key: FileSetting | None = Field(None, description="PEM key of the client certificate")
    allow_plain_http: bool = Field(
        default=False,
        description="Allow http:// to a non-loopback host (refused when environment=production)",
    )
    resilience: ResilienceSettings = Field(
        default_factory=ResilienceSettings,
        description="Bulkhead, retries and circuit breaker for this signer",
    )

    def loopback_port(self) -> int | None:
        """The port this signer is called on when it is on this host (loopback), else None."""
        url = httpx.URL(self.url)
        if not is_loopback_host(url.host):
            return None
        return url.port or (443 if url.scheme == "https" else 80)

    def plain_http_off_host(self) -> bool:
        """Whether calls to this signer would leave the host unencrypted (http, not loopback)."""
        return plain_http_off_host(httpx.URL(self.url))

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> SignerSettings:
        parts = urlsplit(self.url)
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when it is read
        except ValueError:
            raise ValueError("signer url has a port that is not a number from 0 to 65535") from None
        # Read as the client that calls it reads it: `urlsplit` took `[::1].signer.test` as
        # the host ::1 (loopback, so plain http passed), which httpx refused at start-up.
        if absolute_http_url(self.url) is None:
            raise ValueError("signer url must be an absolute http(s) URL")
        # httpx turns user info into Basic credentials, and the aiohttp transport then refuses
        # the request that carries them twice: start-up ended in a traceback. The signers take
        # no such credentials; a password in a URL would only reach logs. Any "@" counts.
        if "@" in parts.netloc:
            raise ValueError(
                "signer url must not hold a user name or password (the signers take no HTTP "
                "authentication, and a URL reaches the logs): use client_cert and client_key "
                "for mutual TLS"
            )
        if self.plain_http_off_host() and not self.allow_plain_http:
            raise ValueError(
                "plain http to a non-loopback signer needs allow_plain_http=true; use https"
            )
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        # Every call the bulkhead admits must find a connection at once: otherwise it queues
        # inside the HTTP pool, invisible to the bulkhead's shedding and metrics. One more than
        # the bound leaves a connection for the readiness probe when the bulkhead is full.
        if self.max_connections <= self.resilience.max_in_flight:
            raise ValueError(
                "max_connections must exceed resilience.max_in_flight "
                f"({self.max_connections} <= {self.resilience.max_in_flight})"
            )
        return self


class TrustSettings(BaseModel):
    """Where the public keys that verify signer output come from."""

    model_config = FINITE_NUMBERS

    eu_certificates: list[Path] = Field(
        default_factory=list, description="DSC certificate files (PEM or DER)"
    )
    domestic_keys: list[Path] = Field(
        default_factory=list, description="Domestic public key files (PEM)"
    )
    fetch_from_signers: bool = Field(
        default=False,
        description="Fetch keys from the signers' GET /keys at start-up (fake signers only; "
        "not with trust files)",
    )

    def conflicts(self) -> list[str]:
        """Trust files given with `fetch_from_signers`, which would leave them unread: a line.

        Checked with the settings' other problems (`Settings`), so that every one is reported
        at once, rather than here, which would stop the check at the group.
        """
        given = [
            name
            for name, paths in (
                ("eu_certificates", self.eu_certificates),
                ("domestic_keys", self.domestic_keys),
            )
            if paths
        ]
        if not (self.fetch_from_signers and given):
            return []
        problem = (
            f"{' and '.join(given)} would be ignored: fetch_from_signers takes the keys from "
            "the signers instead; give trust files or fetch_from_signers, not both"
        )
        return [problem]


class IdemixSettings(BaseModel):
    """The Idemix scheme of the domestic signer: its issuer keys and the checks' process pool.

    Read only with ``domestic_scheme=idemix``; see docs/operations.md for sizing the pool.
    """

    model_config = FINITE_NUMBERS

    keys: dict[NameSetting, FileSetting] = Field(
        default_factory=dict,
        description="Issuer public keys (IRMA XML) by issuerPkId, a JSON map "
        '(`{"VWS-CC-1": "/keys/VWS-CC-1.xml"}`); idemix needs at least one',
    )
    check_workers: PositiveInt = Field(
        1,
        le=64,
        description="Worker processes that verify Idemix proofs (one core each when busy)",
    )
    max_checks_in_flight: PositiveInt = Field(
        8,
        le=10_000,
        description="Idemix checks queued or running at once; more wait, within their "
        "request's deadline",
    )


#: The longest default validity an operator may give an EU credential: ten years.
MAX_VALIDITY_DAYS = 10 * 365
_AT_MOST_DAYS = f"(at most {MAX_VALIDITY_DAYS} days: ten years)"
_AT_MOST_HOURS = f"(at most {MAX_VALIDITY_DAYS * 24} hours: ten years)"


class EuPolicySettings(BaseModel):
    """Default validity of EU credentials per key usage, and clock tolerance.

    Each bound keeps ``now`` plus the setting inside the calendar, so no accepted value can turn
    every request that names no expiry into a 500; the signing DSC caps the validity anyway.
    """

    model_config = FINITE_NUMBERS

    vaccination_validity_days: PositiveInt = Field(
        365,
        le=MAX_VALIDITY_DAYS,
        description=f"Validity of a vaccination DCC if the request names no expiry {_AT_MOST_DAYS}",
    )
    test_validity_hours: PositiveInt = Field(
        72,
        le=MAX_VALIDITY_DAYS * 24,
        description=f"Validity of a test DCC when the request names no expiry {_AT_MOST_HOURS}",
    )
    recovery_validity_days: PositiveInt = Field(
        180,
        le=MAX_VALIDITY_DAYS,
        description=(
            "Validity of a recovery DCC when the request names no expiry, never past the end of "
            f"its du {_AT_MOST_DAYS}"
        ),
    )
    max_clock_skew_seconds: PositiveInt = Field(
        120,
        le=3600,
        description="Tolerated difference between our clock and the signer's iat (at most 3600)",
    )

    def default_validity(self) -> dict[KeyUsage, timedelta]:
        """The validity applied when a request names no expirationTime."""
        return {
            KeyUsage.VACCINATION: timedelta(days=self.vaccination_validity_days),
            KeyUsage.TEST: timedelta(hours=self.test_validity_hours),
            KeyUsage.RECOVERY: timedelta(days=self.recovery_validity_days),
        }


#: The widest validFrom window an operator may configure either side of now: ten years.
MAX_VALID_FROM_OFFSET_HOURS = 10 * 365 * 24
_AT_MOST_TEN_YEARS = f"(at most {MAX_VALID_FROM_OFFSET_HOURS}: ten years)"


class DomesticPolicySettings(BaseModel):
    """Bounds on domestic attributes and the issuance session."""

    model_config = FINITE_NUMBERS

    max_valid_from_past_hours: PositiveInt = Field(
        24 * 30,
        le=MAX_VALID_FROM_OFFSET_HOURS,
        description=f"How far in the past a domestic validFrom may lie {_AT_MOST_TEN_YEARS}",
    )
    max_valid_from_future_hours: PositiveInt = Field(
        24 * 14,
        le=MAX_VALID_FROM_OFFSET_HOURS,
        description=f"How far in the future a domestic validFrom may lie {_AT_MOST_TEN_YEARS}",
    )
    max_valid_for_hours: PositiveInt = Field(
        24 * 90,
        le=MAX_VALID_FOR_HOURS,
        description="Largest domestic validForHours accepted (at most "
        f"{MAX_VALID_FOR_HOURS}: the attribute has {HOURS_MAX_DIGITS} digits at most)",
    )
    credential_amount: PositiveInt = Field(
        28, le=100, description="Credentials prepared per issuance session"
    )
    stoken_ttl_seconds: PositiveInt = Field(
        60, description="Lifetime of an issuance session token (single use)"
    )
    max_open_stokens: PositiveInt = Field(
        100_000,
        description="Open issuance sessions kept at most (memory bound; the memory session "
        "store's: a Redis store is bounded by the server's maxmemory)",
    )

    def policy(self) -> DomesticPolicy:
        """The pure domain policy these settings describe."""
        return DomesticPolicy(
            max_valid_from_past=timedelta(hours=self.max_valid_from_past_hours),
            max_valid_from_future=timedelta(hours=self.max_valid_from_future_hours),
            max_valid_for_hours=self.max_valid_for_hours,
        )


class LoopLagSettings(BaseModel):
    """Event-loop health: the lag monitor, and the CPU gate that keeps the loop responsive."""

    model_config = FINITE_NUMBERS

    interval_seconds: PositiveFloat = Field(
        0.05, description="Period of the timer whose late wake-ups are measured"
    )
    warn_threshold_seconds: PositiveFloat = Field(
        0.1, description="A wake-up later than this logs a warning (the loop was held)"
    )
    warn_every_seconds: PositiveFloat = Field(
        10.0, description="At most one lag warning per this many seconds"
    )
    cpu_permits: PositiveInt = Field(
        2,
        description="/v1 requests doing CPU work on the loop at once; the others wait parked "
        "(signer waits do not count), so a CPU-bound gateway still answers /healthz at once "
        "(bench S1: /healthz p99 19 / 28 / 46 / 88 ms at 1 / 2 / 4 / 8, same throughput)",
    )
    cpu_new_every: PositiveInt = Field(
        2,
        description="Requests back from a signer get freed CPU permits before new ones, but "
        "after this many in a row a waiting new request gets the next, so signings keep "
        "starting while a crowd of answers is verified (bench S1 shape, share of a 1,000 "
        "req/s limit in four alternated rounds: 0.70-0.82 at 4, 0.80-0.94 at 2, 0.82-0.95 at 1)",
    )
    cpu_queue_timeout_seconds: PositiveFloat = Field(
        10.0,
        description="Longest wait of a new /v1 request for a CPU permit; after it the request is "
        "answered 503 problem+json (overloaded, Retry-After) without reaching a signer. Requests "
        "back from a signer never time out here",
    )
    cpu_queue_max: PositiveInt = Field(
        20_000,
        description="New /v1 requests waiting for a CPU permit at most; one more is answered "
        "503 problem+json (overloaded, Retry-After) at once, without reaching a signer. Requests "
        "back from a signer are never refused here. Each waiting request holds ~47 KB (bench "
        "S4), ~1 GB at 20,000: set it from the pod's memory limit (docs/operations.md, Sizing), "
        "above the bursts a pod must take (bench S4 parks up to ~10,000)",
    )
    gc_mode: Literal["timed", "count"] = Field(
        "timed",
        description="timed: young garbage collections on a timer (gc_young_interval_seconds), "
        "full ones at a quiet moment; count: Python's allocation-count trigger at gc_threshold0. "
        "Bench S1: longest pause 142-232 ms by count, 22-60 ms timed (docs/benchmarks.md)",
    )
    gc_young: YoungMode = Field(
        "freeze",
        description="Timed mode: a tick collects the young generations (collect), or freezes "
        "every tracked object instead and leaves reference cycles to the full collections "
        "(freeze: no per-request walk; docs/operations.md)",
    )
    gc_young_interval_seconds: PositiveFloat = Field(
        0.05, description="Timed mode: tick (collect or freeze the young objects) this often"
    )
    gc_middle_every: PositiveInt = Field(
        1,
        description="Timed mode: every Nth young collection also collects generation 1 "
        "(1: each tick walks a survivor once on its way to generation 2; bench S1: a third "
        "less collector time and half the longest pause of 2)",
    )
    gc_full_interval_seconds: PositiveFloat = Field(
        60.0,
        description="Timed mode: a full collection is due this often. It waits for a moment "
        "with at most gc_full_quiet_in_flight requests in flight, at most one more interval",
    )
    gc_full_quiet_in_flight: NonNegativeInt = Field(
        32, description="Requests in flight at most for a due full collection to run early"
    )
    gc_threshold0: PositiveInt | None = Field(
        10_000,
        description="Count mode: generation-0 threshold (none: Python's default, 700). "
        "Larger means rarer, longer collections",
    )

    @model_validator(mode="after")
    def _full_after_young(self) -> LoopLagSettings:
        if self.gc_full_interval_seconds < self.gc_young_interval_seconds:
            raise ValueError("gc_full_interval_seconds must be at least gc_young_interval_seconds")
        return self


class ShutdownSettings(BaseModel):
    """Graceful shutdown on SIGTERM (`signing-gateway serve`)."""

    model_config = FINITE_NUMBERS

    drain_timeout_seconds: PositiveFloat = Field(
        20.0,
        description="After SIGTERM, how long in-flight requests may finish before being cancelled",
    )
    cancel_grace_seconds: PositiveFloat = Field(
        2.0, description="After cancelling, how long cancelled requests get to send their answer"
    )


class ObservabilitySettings(BaseModel):
    """Access log and optional tracing (metrics are always on at GET /metrics)."""

    model_config = FINITE_NUMBERS

    access_log: bool = Field(
        default=True,
        description="One INFO line per request (/healthz excepted): method, route "
        "template, status, duration, id",
    )
    tracing_enabled: bool = Field(
        default=False,
        description="OpenTelemetry spans for requests and signer calls (needs the otel extra)",
    )
    service_name: str = Field(
        "signing-gateway", description="service.name of the spans when the gateway sets up OTel"
    )


class Settings(BaseSettings):
    """Everything the gateway reads at start-up."""

    # "none" in the environment is None: the way to ask for an optional setting's absence
    # (gc_threshold0, a CA bundle) where the default is a value.
    model_config = SettingsConfigDict(
        env_prefix="SIGNING_GATEWAY_",
        env_nested_delimiter="__",
        extra="forbid",
        env_parse_none_str="none",
        allow_inf_nan=False,  # as every group (FINITE_NUMBERS)
    )

    environment: Literal["dev", "production"] = Field(
        "dev",
        description="production requires both signer URLs, and refuses fetched signer keys, "
        "disabled auth, and plain http to a signer or a Redis session store without TLS or "
        "authentication on another host",
    )
    eu_signer: SignerSettings = SignerSettings(url=DEV_EU_SIGNER_URL)
    domestic_signer: SignerSettings = SignerSettings(url=DEV_DOMESTIC_SIGNER_URL)
    trust: TrustSettings = TrustSettings()
    domestic_scheme: Literal["simulation", "idemix"] = Field(
        "simulation",
        description="What the domestic signer signs with: simulation (Ed25519, the bundled "
        "fake signer) or idemix (CL signatures, the CoronaCheck Idemix server)",
    )
    idemix: IdemixSettings = Field(
        default_factory=IdemixSettings, description="Issuer keys and checks of the idemix scheme"
    )
    eu_policy: EuPolicySettings = EuPolicySettings()
    domestic: DomesticPolicySettings = DomesticPolicySettings()
    session_store: SessionStoreSettings = Field(
        default_factory=SessionStoreSettings,
        description="Where issuance sessions live: this process, or a Redis shared by replicas",
    )
    request_deadline_seconds: PositiveFloat = Field(
        20.0,
        description="Overall budget for the signer work of one inbound request; a caller may "
        "ask for less with the X-Request-Timeout header, never for more",
    )
    shutdown: ShutdownSettings = Field(
        default_factory=ShutdownSettings, description="Draining on SIGTERM"
    )
    loop_lag: LoopLagSettings = Field(
        default_factory=LoopLagSettings, description="Event-loop lag monitor"
    )
    readiness_probe_interval_seconds: PositiveFloat = Field(
        5.0,
        description="Seconds between background probes of each dependency: the signers, the "
        "audit file, the Redis session store and the Idemix check workers (each when in use)",
    )
    readiness_probe_timeout_seconds: PositiveFloat = Field(
        2.0, description="Budget of one readiness probe; slower counts as down"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level logged (the access log is INFO)"
    )
    log_format: Literal["json", "console"] = Field(
        "json", description="json: one JSON object per line; console: readable, for development"
    )
    auth: AuthSettings = Field(
        default_factory=AuthSettings, description="Caller authentication of /v1/* (bearer JWT)"
    )
    limits: LimitsSettings = Field(
        default_factory=LimitsSettings,
        description="Request head and body sizes, read timeouts, JSON depth and strings",
    )
    audit: AuditSettings = Field(
        default_factory=AuditSettings, description="Audit trail of issuance attempts"
    )
    observability: ObservabilitySettings = Field(
        default_factory=ObservabilitySettings, description="Access log and tracing"
    )

    @model_validator(mode="after")
    def _token_fits_in_a_head(self) -> Settings:
        # A token the verifier would take must not be refused 431 before it is read.
        needed = self.auth.max_token_bytes + HEAD_ROOM_BYTES
        if self.auth.mode == "jwt" and self.limits.max_header_bytes < needed:
            raise ValueError(
                f"limits.max_header_bytes must be at least auth.max_token_bytes + "
                f"{HEAD_ROOM_BYTES} ({needed}), so that a bearer token of the largest size "
                "accepted fits in a request head"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_real_trust(self) -> Settings:
        # Every problem is reported, a line each: fixing one must not reveal the next. A signer
        # left at its default is named by its URL, the setting to give.
        problems: list[tuple[tuple[str, ...], str]] = [
            ((name, "url"), _UNSET_IN_PRODUCTION) for name in self._signers_left_default()
        ]
        problems += [((), message) for message in self._trust_and_auth_problems()]
        problems += [(("trust",), message) for message in self.trust.conflicts()]
        if self.domestic_scheme == "idemix" and not self.idemix.keys:
            problems.append((("idemix", "keys"), _IDEMIX_WITHOUT_KEYS))
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", message), loc=loc, input=None
                    )
                    for loc, message in problems
                ],
            )
        return self

    def _signers_left_default(self) -> list[str]:
        """The signers production would reach at their development default (a local fake)."""
        if self.environment != "production":
            return []
        return [
            name for name in ("eu_signer", "domestic_signer") if name not in self.model_fields_set
        ]

    def _trust_and_auth_problems(self) -> list[str]:
        """What production refuses in trust and caller authentication, and what jwt mode lacks."""
        problems = []
        if self.environment == "production" and self.trust.fetch_from_signers:
            problems.append(
                "production must pin signer keys in files; fetch_from_signers is for the fakes"
            )
        if self.environment == "production":
            plain = [
                name
                for name, signer in (
                    ("eu_signer", self.eu_signer),
                    ("domestic_signer", self.domestic_signer),
                )
                if signer.plain_http_off_host()
            ]
            if self.session_store.plain_off_host():
                problems.append(
                    "production keeps issuance sessions only over TLS: session_store."
                    + (
                        "sentinels are redis:// (the primary they name may be on another host;"
                        " use rediss://)"
                        if self.session_store.sentinels
                        else "redis_url is redis:// to another host (use rediss://)"
                    )
                )
            if self.session_store.unauthenticated_off_host():
                problems.append(
                    "production authenticates to its session store: set "
                    "session_store.redis_password_file (AUTH"
                    + ("; sentinel_password_file too" if self.session_store.sentinels else "")
                    + ") or client_cert and client_key (mutual TLS)"
                )
            if plain:
                problems.append(
                    "production sends personal data to its signers only over https: "
                    + ", ".join(f"{name}.url" for name in plain)
                    + " is plain http to another host (allow_plain_http is not for production)"
                )
        if self.auth.mode == "disabled" and self.environment == "production":
            problems.append("auth.mode=disabled is for local use; production needs auth.mode=jwt")
        missing = self.auth.missing_for_jwt() if self.auth.mode == "jwt" else []
        if missing:
            problems.append(
                "caller authentication is not configured: set "
                + ", ".join(missing)
                + " (or auth.mode=disabled for local use)"
            )
        return problems


_UNSET_IN_PRODUCTION = (
    "required when environment=production (the default is a local fake signer's address)"
)
_IDEMIX_WITHOUT_KEYS = (
    "required when domestic_scheme=idemix: the issuer keys (issuerPkId to IRMA XML file) that "
    "verify the domestic signer's credentials"
)
