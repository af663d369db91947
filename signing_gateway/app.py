"""The application factory: `create_app(settings)` builds everything; nothing runs at import.

Run with `signing-gateway serve`, or under a uvicorn command line of your own with
`uvicorn --factory signing_gateway.app:create_served_app --http
signing_gateway.runtime.http_protocol:GatewayHttpProtocol` (docs/operations.md): the served
factory configures logging and reports invalid settings in a few lines, exit status 2.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import multiprocessing
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from signing_gateway.api import combined, domestic, eu, health, keys
from signing_gateway.api.bodies import document_schemas
from signing_gateway.api.deps import GatewayState
from signing_gateway.api.examples import serve_current_examples
from signing_gateway.api.openapi_headers import document_headers
from signing_gateway.api.openapi_policy import document_domestic_policy
from signing_gateway.api.problems import install_problem_handlers
from signing_gateway.api.routes import add_routes
from signing_gateway.api.schemas import (
    CredentialsRequest,
    IssueRequest,
    PrintRequest,
    Problem,
    StaticRequest,
)
from signing_gateway.domain.dcc import EuRequest
from signing_gateway.domain.valuesets import ValueSetName, value_set
from signing_gateway.issuance.domestic import DomesticIssuer
from signing_gateway.issuance.eu import EuIssuer
from signing_gateway.issuance.stoken import InMemoryStokenStore, StokenStore
from signing_gateway.observability.counter_series import start_event_counters
from signing_gateway.observability.instrument import FASTAPI_TELEMETRY_OFF, instrument_app
from signing_gateway.observability.logging import configure_logging, write_through_logging
from signing_gateway.observability.looplag import LoopLagMonitor
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.readiness import Probe, ReadinessMonitor
from signing_gateway.observability.signing_certificates import watch_signing_certificates
from signing_gateway.resilience.caller_timeout import CallerTimeoutMiddleware
from signing_gateway.resilience.drain import DrainController, DrainMiddleware
from signing_gateway.resilience.policy import SignerPolicy
from signing_gateway.runtime.cpu_gate import CpuGate, CpuGateMiddleware
from signing_gateway.runtime.fd_limit import fd_budget
from signing_gateway.runtime.gc_tuning import GcPauses, GcSchedule, gc_threshold0
from signing_gateway.security.auth import authenticate_head
from signing_gateway.security.limits import RequestLimitsMiddleware
from signing_gateway.security.setup import open_audit_trail, open_token_verifier
from signing_gateway.security.tls_contexts import client_tls_context
from signing_gateway.settings import IdemixSettings, Settings, SignerSettings
from signing_gateway.settings_env import (
    FLAG_VARIABLES,
    problems_report,
    settings_from_environment,
)
from signing_gateway.signers.domestic import DomesticSignerClient
from signing_gateway.signers.eu import EuSignerClient
from signing_gateway.signers.http import build_signer_client
from signing_gateway.start_up import StartUpError, report_start_up_errors
from signing_gateway.start_up_checks import checked_settings, tls_file_problems
from signing_gateway.trust_loading import load_trust

if TYPE_CHECKING:
    import ssl

    from signing_gateway.issuance.redis_stokens import RedisStokenStore
    from signing_gateway.runtime.idemix_pool import IdemixCheckPool

API_DESCRIPTION = """\
Validates certificate requests (EU Digital COVID Certificates and Dutch domestic
certificates), has HSM-backed signer services sign them, verifies every credential
before releasing it, and answers every failure as RFC 9457 problem+json.

Every answer carries `X-Request-ID`; every GET also answers HEAD (the same status and
headers, no body). A request head (request line and header fields) over the gateway's
size limit, or of more header fields than its count limit, is refused 431 problem+json
before any route sees it, one not complete in
time 408, and a request that is not valid HTTP/1.1 400 (`bad-request`), its connection
closed in each case. Their `instance` is the request's path once its request line was
read whole, and empty (the request's own URI) before that. A request carrying `Authorization`,
`Content-Type` or `Host` more than once is refused 400 problem+json before any route sees it,
as is an HTTP/1.1 request without `Host`, one whose `Host` names no host, and one whose path
holds an encoded slash (`%2F`). A path no operation has is answered 404, and a method its path
does not take 405 with `Allow` (HEAD wherever GET is; OPTIONS is such a method: the gateway
serves no CORS), both problem+json of type `about:blank` whose `detail` names the path
(percent-encoded past the characters a path holds as they are, at most 100 characters) and, for
a 405, the method and the methods the path allows. `Accept` is not read: every answer is JSON,
problem+json or, from `/metrics`, text.
"""


def _client(signer: SignerSettings, tls: ssl.SSLContext) -> httpx.AsyncClient:
    return build_signer_client(
        signer.url,
        connect_timeout=signer.connect_timeout,
        read_timeout=signer.read_timeout,
        write_timeout=signer.write_timeout,
        pool_timeout=signer.pool_timeout,
        max_connections=signer.max_connections,
        keepalive_expiry=signer.keep_alive_seconds,
        transport=signer.transport,
        verify=tls,
    )


def _signer_tls(signer: SignerSettings) -> ssl.SSLContext:
    """A signer's TLS context (blocking: loads its files; an encrypted key is refused)."""
    return client_tls_context(
        ca_bundle=signer.ca_bundle, client_cert=signer.client_cert, client_key=signer.client_key
    )


class IdemixUnavailableError(StartUpError):
    """Raised at start-up when Idemix checks cannot run; the gateway will not start.

    An issuer key that does not load, or check workers that do not start.
    """


def _idemix_pool(settings: IdemixSettings) -> IdemixCheckPool:
    """The check workers' pool, not started, with the issuer keys read (blocking).

    The Idemix checks, gmpy2 and the key parser are imported here, in the idemix scheme only
    and off the event loop (an import reads files): the simulation scheme never loads them.

    Raises:
        IdemixUnavailableError: a key file cannot be read or parsed.
    """
    from signing_gateway.idemix_key_files import read_idemix_keys  # noqa: PLC0415 - idemix only
    from signing_gateway.runtime.idemix_pool import IdemixCheckPool  # noqa: PLC0415
    from signing_gateway.verification.idemix_keys import IdemixKeyError  # noqa: PLC0415

    try:
        keys = read_idemix_keys(settings.keys)
    except IdemixKeyError as exc:
        raise IdemixUnavailableError(str(exc)) from exc
    return IdemixCheckPool(
        keys, workers=settings.check_workers, max_in_flight=settings.max_checks_in_flight
    )


async def _idemix_checks(
    settings: Settings, stack: AsyncExitStack, probes: dict[str, tuple[Probe, bool]]
) -> IdemixCheckPool | None:
    """The idemix scheme's check workers, running until `stack` closes (None: simulation).

    Their readiness probe joins `probes`: down while broken workers are replaced (checks are
    answered 503 meanwhile).
    """
    if settings.domestic_scheme != "idemix":
        return None
    pool = await asyncio.to_thread(_idemix_pool, settings.idemix)
    try:
        await pool.start()
    except (BrokenProcessPool, OSError) as exc:
        raise IdemixUnavailableError(
            f"the Idemix check workers did not start ({type(exc).__name__}); start again"
        ) from exc
    stack.push_async_callback(pool.close)
    probes["idemix-checks"] = (pool.probe, True)
    return pool


class SignerTlsError(StartUpError):
    """Raised at start-up when a signer's TLS file does not load; the gateway will not start."""


async def _signer_clients(
    settings: Settings, stack: AsyncExitStack
) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """The EU and the domestic signer's clients, open until `stack` closes.

    Their TLS contexts are built in a thread: loading a CA bundle or a key is file I/O.

    Raises:
        SignerTlsError: a CA bundle, client certificate or key that does not load, named by
            its setting as the check before start-up names it (a file changed since, or an
            app from `create_app()`, whose files are not checked first).
    """
    try:
        eu_tls = await asyncio.to_thread(_signer_tls, settings.eu_signer)
        domestic_tls = await asyncio.to_thread(_signer_tls, settings.domestic_signer)
    except (OSError, ValueError) as exc:  # ssl.SSLError, an encrypted key
        problems = await asyncio.to_thread(tls_file_problems, settings) or [
            f"a signer's TLS file could not be loaded ({type(exc).__name__}); start again"
        ]
        raise SignerTlsError("; ".join(problems)) from exc
    eu = await stack.enter_async_context(_client(settings.eu_signer, eu_tls))
    domestic = await stack.enter_async_context(_client(settings.domestic_signer, domestic_tls))
    return eu, domestic


#: The Redis session store's module, imported only where that store is configured.
_REDIS_STOKENS = "signing_gateway.issuance.redis_stokens"


async def _stoken_store(
    settings: Settings,
    metrics: GatewayMetrics,
    stack: AsyncExitStack,
    probes: dict[str, tuple[Probe, bool]],
) -> StokenStore:
    """Where issuance sessions live (`session_store`), closed with `stack`.

    A Redis store is probed for readiness as `session-store` (required only if configured
    so: every replica shares it). Nothing connects before the probe or the first session.
    """
    domestic = settings.domestic
    if settings.session_store.kind == "memory":
        memory = InMemoryStokenStore(
            ttl_seconds=domestic.stoken_ttl_seconds, max_sessions=domestic.max_open_stokens
        )
        stack.callback(memory.close)  # its sweep timer
        return memory
    # Imported for this store only, and off the event loop: an import reads files, and the
    # Redis client's loads OpenTelemetry where it is installed.
    redis_stokens = await asyncio.to_thread(importlib.import_module, _REDIS_STOKENS)
    redis: RedisStokenStore = await redis_stokens.open_redis_store(
        settings.session_store, ttl_seconds=domestic.stoken_ttl_seconds, metrics=metrics
    )
    stack.push_async_callback(redis.close)  # after the prober stops (pushed later)
    probes["session-store"] = (redis.probe, settings.session_store.required)
    return redis


def _read_value_sets() -> None:
    """Read every DCC value set once, so no request reads package files on the event loop."""
    for name in ValueSetName:
        value_set(name)


def _freeze_start_up_objects(stack: AsyncExitStack) -> None:
    """Keep what start-up built out of every later garbage collection, until shutdown.

    A full collection walks every tracked object: with the modules, schemas and keys loaded
    that is hundreds of thousands, and the load test caught collections holding the event loop
    for 100-360 ms mid-request. After `gc.freeze()` collections walk only what serving
    allocates. Shutdown unfreezes, so a process that builds many apps (the tests) leaks none.
    """
    gc.collect()
    gc.freeze()
    stack.callback(gc.unfreeze)


def _gc_schedule(settings: Settings, drain: DrainController) -> GcSchedule | None:
    """Timed garbage collection as configured (None: Python's allocation-count trigger)."""
    lag = settings.loop_lag
    if lag.gc_mode == "count":
        return None
    return GcSchedule(
        young_interval=lag.gc_young_interval_seconds,
        middle_every=lag.gc_middle_every,
        full_interval=lag.gc_full_interval_seconds,
        quiet_in_flight=lag.gc_full_quiet_in_flight,
        in_flight=lambda: drain.in_flight,
        young=lag.gc_young,
    )


def _lifespan(
    settings: Settings, metrics: GatewayMetrics
) -> Callable[[FastAPI], AbstractAsyncContextManager[GatewayState]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[GatewayState]:
        async with AsyncExitStack() as stack:
            # Last of the teardown: a worker of `serve --workers N` (a second signal cut its
            # drain short) or uvicorn's own command line may end by a signal, without
            # `atexit`, so what the shutdown logged is written out here, and what is logged
            # after it (uvicorn's last lines) as it comes.
            stack.callback(write_through_logging)
            await asyncio.to_thread(_read_value_sets)
            eu_http, domestic_http = await _signer_clients(settings, stack)
            eu_client = EuSignerClient(eu_http, health_path=settings.eu_signer.health_path)
            domestic_client = DomesticSignerClient(
                domestic_http,
                health_path=settings.domestic_signer.health_path,
                scheme=settings.domestic_scheme,
            )
            eu_trust, domestic_trust = await load_trust(
                settings.trust, eu_client=eu_client, domestic_client=domestic_client
            )
            watch_signing_certificates(eu_trust, metrics, now=datetime.now(UTC))
            audit = await open_audit_trail(
                settings.audit,
                metrics=metrics,
                cancellations_answered=True,  # by DrainMiddleware, below
            )
            stack.push_async_callback(audit.close)  # after the prober stops (pushed below)
            probes: dict[str, tuple[Probe, bool]] = {
                "eu-signer": (eu_client.probe, settings.eu_signer.required),
                "domestic-signer": (domestic_client.probe, settings.domestic_signer.required),
            }
            if settings.audit.file is not None:
                # Failing closed, a file that cannot take records refuses every issuance.
                probes["audit-file"] = (audit.probe, settings.audit.fail_closed)
            idemix = await _idemix_checks(settings, stack, probes)
            stokens = await _stoken_store(settings, metrics, stack, probes)
            readiness = ReadinessMonitor(
                probes,
                interval=settings.readiness_probe_interval_seconds,
                timeout=settings.readiness_probe_timeout_seconds,
            )
            readiness.export(metrics.dependency_up)
            if idemix is not None:
                readiness.add_detail("idemixChecks", idemix.snapshot)
            readiness.start()
            stack.push_async_callback(readiness.stop)
            loop_lag = LoopLagMonitor(
                metrics,
                interval=settings.loop_lag.interval_seconds,
                warn_threshold=settings.loop_lag.warn_threshold_seconds,
                warn_every=settings.loop_lag.warn_every_seconds,
            )
            readiness.add_detail("eventLoop", loop_lag.snapshot)
            fds = fd_budget(
                settings.eu_signer.max_connections
                + settings.domestic_signer.max_connections
                + settings.session_store.connections()
            )
            readiness.add_detail("fileDescriptors", fds.snapshot)
            readiness.add_detail("cpuGate", app.state.cpu_gate.snapshot)
            eu_policy = SignerPolicy("eu", settings.eu_signer.resilience, metrics=metrics)
            domestic_policy = SignerPolicy(
                "domestic", settings.domestic_signer.resilience, metrics=metrics
            )
            readiness.add_detail(
                "signers",
                lambda: {
                    "eu-signer": eu_policy.snapshot(),
                    "domestic-signer": domestic_policy.snapshot(),
                },
            )
            drain: DrainController = app.state.drain
            drain.attach(readiness)
            token_verifier = await open_token_verifier(settings.auth, stack)
            readiness.add_detail("audit", audit.snapshot)
            _freeze_start_up_objects(stack)
            gc_pauses = GcPauses()
            gc_pauses.install()
            stack.callback(gc_pauses.uninstall)
            gc_schedule = _gc_schedule(settings, drain)
            if gc_schedule is None:
                stack.enter_context(gc_threshold0(settings.loop_lag.gc_threshold0))
                readiness.add_detail("gc", gc_pauses.snapshot)
            else:
                gc_schedule.start()
                stack.push_async_callback(gc_schedule.stop)
                readiness.add_detail(
                    "gc", lambda: {**gc_pauses.snapshot(), "schedule": gc_schedule.snapshot()}
                )
            # Sampling starts once start-up work (and its one full collection) is done.
            loop_lag.start()
            stack.push_async_callback(loop_lag.stop)
            yield GatewayState(
                settings=settings,
                eu_issuer=EuIssuer(
                    client=eu_client,
                    signer_policy=eu_policy,
                    trust=eu_trust,
                    default_validity=settings.eu_policy.default_validity(),
                    max_clock_skew=timedelta(seconds=settings.eu_policy.max_clock_skew_seconds),
                ),
                domestic_issuer=DomesticIssuer(
                    client=domestic_client,
                    signer_policy=domestic_policy,
                    trust=domestic_trust,
                    policy=settings.domestic.policy(),
                    stokens=stokens,
                    credential_amount=settings.domestic.credential_amount,
                    idemix=idemix,
                ),
                eu_trust=eu_trust,
                domestic_trust=domestic_trust,
                readiness=readiness,
                metrics=metrics,
                token_verifier=token_verifier,
                audit=audit,
            )

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the gateway for `settings` (read from the environment when None).

    Read from the environment, the settings are checked as the factory checks them, the
    files they name aside (the lifespan reads those when the app starts).

    Raises:
        InvalidSettingsError: read from the environment, which holds a `SIGNING_GATEWAY_*`
            variable that is no setting (a misspelling would be ignored), a value a setting
            cannot take or a variable that takes JSON holding something else; its message
            names each, a line each, as `serve` does.
        TracingUnavailableError: tracing is on and the `otel` extra is missing.
    """
    settings = settings or settings_from_environment()
    metrics = GatewayMetrics()
    start_event_counters(metrics)
    app = FastAPI(
        title="signing-gateway",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=_lifespan(settings, metrics),
        telemetry=FASTAPI_TELEMETRY_OFF,
        # No 307 from "/v1/dcc/" to "/v1/dcc": its Location would be built from the caller's
        # Host header with "http" (behind a TLS proxy), and a client following it re-sends
        # the body, personal data, there. An unknown path is a 404 like any other.
        redirect_slashes=False,
    )
    # A start-up that fails for want of trust is one error line, not a traceback.
    report_start_up_errors(app.router)
    install_problem_handlers(app)
    # Every /v1 route authenticates its caller: each router declares the scope its routes need
    # (docs/security.md); /v1/print and /v1/credentials check the scopes of the parts a request
    # holds. Added as the app's own routes, not included: see api/routes.
    add_routes(app, eu.router, domestic.router, combined.router, keys.router, health.router)
    document_schemas(
        app, [EuRequest, StaticRequest, IssueRequest, PrintRequest, CredentialsRequest, Problem]
    )
    serve_current_examples(app)
    document_headers(app, deadline_seconds=settings.request_deadline_seconds)
    document_domestic_policy(app, settings.domestic.policy())
    # Inner to outer: the caller's timeout header, body limits, the CPU gate, draining on
    # shutdown; outermost, the request id and metrics (`instrument_app`).
    app.add_middleware(CallerTimeoutMiddleware)
    # Body limits answer before anything reads the body, inside the request id; a request
    # holding its body back until asked for it has its token checked before that.
    app.add_middleware(
        RequestLimitsMiddleware, limits=settings.limits, head_check=authenticate_head
    )
    # Outside the rest of the work: a burst of new requests waits parked here instead of
    # running the middlewares' work all in one loop pass, and one that waits too long, or
    # finds too many waiting, is refused 503 with its request id (see runtime/cpu_gate).
    app.state.cpu_gate = CpuGate(
        settings.loop_lag.cpu_permits,
        queue_timeout=settings.loop_lag.cpu_queue_timeout_seconds,
        queue_max=settings.loop_lag.cpu_queue_max,
        new_every=settings.loop_lag.cpu_new_every,
        on_timeout=metrics.cpu_queue_timeouts.inc,
        on_overflow=metrics.cpu_queue_overflows.inc,
    )
    app.add_middleware(CpuGateMiddleware, gate=app.state.cpu_gate)
    # Outside the CPU gate and the body limits: a request parked for a permit or still sending
    # its body is in flight as much as one at a signer, so the drain waits for it and cancels
    # it at the drain timeout with a 503. Inside the metrics, so that 503 carries the request
    # id and is counted; the work here is a set insertion, cheap ahead of the gate.
    app.state.drain = DrainController(
        drain_timeout=settings.shutdown.drain_timeout_seconds,
        cancel_grace=settings.shutdown.cancel_grace_seconds,
    )
    app.add_middleware(DrainMiddleware, controller=app.state.drain)
    instrument_app(app, settings.observability, metrics)  # last: the outermost middleware
    return app


def create_served_app(settings: Settings | None = None) -> FastAPI:
    """Factory for served processes: logging configured, then the app.

    `settings`: those already read and checked (`serve` reads them before any worker starts);
    by default, read from the environment, as `uvicorn --factory` and each worker of `serve
    --workers N` do. There, they are checked as `serve` checks them (`start_up_checks`): a
    `SIGNING_GATEWAY_*` variable that is no setting, a value a setting cannot take, a variable
    that takes JSON holding something else, tracing without the `otel` extra, trust, JWKS or
    audit files that cannot be used end the process as `serve` does, before anything serves.

    Raises:
        SystemExit: (status 2; 3 in a supervisor's worker) such a problem, once the report is
            on stderr. `uvicorn --factory` lets whatever its factory raises end the process;
            any exception but this one would be printed with its whole traceback.
    """
    if settings is None:
        settings, problems = checked_settings(FLAG_VARIABLES)
        if settings is None or problems:
            print(problems_report(problems), file=sys.stderr)  # noqa: T201
            # In a worker of a supervisor (`serve --workers N`, uvicorn's own `--workers`), a
            # failed start-up (3): uvicorn's supervisor stops on that status, and starts a
            # worker that ends with any other again, for ever, though it would refuse again.
            raise SystemExit(STARTUP_FAILURE if multiprocessing.parent_process() else 2)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return create_app(settings)
