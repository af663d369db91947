"""HTTP handlers: the signer endpoints of each role and the control endpoints of the fake."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from fake_signer import domestic, eu
from fake_signer.behaviour import FaultSpecError
from fake_signer.errors import KeyExpiredError, WireInputError
from fake_signer.serving import JSON, text_response
from fake_signer.state import STATE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fake_signer.behaviour import FaultSpec

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


#: The largest request body taken (aiohttp's default `client_max_size`): far above any signing
#: request (100 attribute sets and a commitment the gateway holds to 64 KiB).
MAX_BODY_BYTES = 1024 * 1024


def _json(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type=JSON)


async def _body(request: web.Request, endpoint: str) -> bytes:
    """The body of a signing request; one past aiohttp's size limit is a 413 counted as input.

    A client that goes away while sending it is counted `cancelled` for `endpoint`, as one that
    goes away later is: the request reached the signer.

    Raises:
        WireInputError: the body is larger than `MAX_BODY_BYTES`.
    """
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise WireInputError(f"body is larger than {MAX_BODY_BYTES} bytes", status=413) from None
    except (asyncio.CancelledError, ConnectionResetError):
        # Cancelled as the connection drops (`handler_cancellation`), else the read fails.
        request.app[STATE].stats.count(endpoint, "cancelled")
        raise


async def get_credential(request: web.Request) -> web.StreamResponse:
    """`POST /get_credential`: sign a DCC into an "HC1:" credential."""
    state = request.app[STATE]
    keys = state.key_material
    try:
        checked = eu.parse_request(
            await _body(request, "get_credential"), now=time.time(), keys=keys
        )
    except WireInputError as exc:
        state.stats.count("get_credential", "bad_request")
        return text_response(exc.status, str(exc))
    except KeyExpiredError as exc:
        state.stats.count("get_credential", exc.outcome)
        return text_response(exc.status, str(exc))

    async def produce(fault: FaultSpec | None) -> bytes:
        # iat is taken after the simulated latency, when the signature is really made.
        return eu.credential_response(
            checked,
            keys=keys,
            issuer=state.settings.country,
            issued_at=int(time.time()),
            fault=fault,
        )

    return await state.pipeline.run(request, "get_credential", produce)


async def _domestic_body(request: web.Request, endpoint: str) -> bytes:
    """The body of a domestic request, refusing any content type but exactly JSON.

    Refused with 400, not 415: the Idemix server answers a wrong content type as a bad request.
    """
    if request.headers.get("Content-Type") != JSON:
        raise WireInputError("Content-Type must be exactly application/json")
    return await _body(request, endpoint)


async def prepare_issue(request: web.Request) -> web.StreamResponse:
    """`POST /prepare_issue`: hand out a single-use issuer nonce."""
    state = request.app[STATE]
    try:
        amount = domestic.parse_prepare_issue(await _domestic_body(request, "prepare_issue"))
    except WireInputError as exc:
        state.stats.count("prepare_issue", "bad_request")
        return text_response(exc.status, str(exc))
    key = state.key_material.domestic

    async def produce(_fault: FaultSpec | None) -> bytes:
        if state.idemix is not None:
            return state.idemix.prepare_issue_response(state.nonces, amount)
        return domestic.prepare_issue_response(key, state.nonces, amount)

    # A nonce carries no signature: bad-signature and wrong-kid wait for the /issue.
    return await state.pipeline.run(request, "prepare_issue", produce, signs=False)


async def issue(request: web.Request) -> web.StreamResponse:
    """`POST /issue`: sign attribute sets against a nonce from `/prepare_issue`."""
    state = request.app[STATE]
    try:
        checked = domestic.parse_issue(await _domestic_body(request, "issue"))
        # With the body, before a fault is picked: a stale nonce is the client's mistake, which
        # neither a fault header hides nor a `_control` fault is used up on. It is used up (and
        # so checked again) only when signing.
        state.nonces.check(checked.nonce, wanted=len(checked.attributes))
        if state.idemix is not None:
            state.idemix.check_commitment(checked)
        else:
            domestic.check_commitment(checked)
    except WireInputError as exc:
        state.stats.count("issue", "bad_request")
        return text_response(exc.status, str(exc))
    if state.idemix is not None:
        # The app's proofs of U, as the Idemix server checks them before signing: a failing
        # one is the client's mistake too, refused before a fault is picked.
        try:
            await state.idemix.verify_commitment(checked)
        except WireInputError as exc:
            state.stats.count("issue", "bad_request")
            return text_response(exc.status, str(exc))
        except asyncio.CancelledError:
            state.stats.count("issue", "cancelled")
            raise
    key = state.key_material.domestic

    async def produce(fault: FaultSpec | None) -> bytes:
        if state.idemix is not None:
            return await state.idemix.issue_response(checked, state.nonces, fault)
        return await domestic.issue_response(checked, key, state.nonces, fault)

    return await state.pipeline.run(request, "issue", produce)


async def issue_static(request: web.Request) -> web.StreamResponse:
    """`POST /issue_static`: sign one attribute set into an "NL2:" QR payload."""
    state = request.app[STATE]
    try:
        attributes = domestic.parse_issue_static(await _domestic_body(request, "issue_static"))
    except WireInputError as exc:
        state.stats.count("issue_static", "bad_request")
        return text_response(exc.status, str(exc))
    key = state.key_material.domestic

    async def produce(fault: FaultSpec | None) -> bytes:
        if state.idemix is not None:
            return await state.idemix.issue_static_response(attributes, fault)
        return domestic.issue_static_response(attributes, key, fault)

    return await state.pipeline.run(request, "issue_static", produce)


async def healthz(_request: web.Request) -> web.Response:
    """`GET /healthz`: the process and its event loop answer."""
    return _json({"status": "ok"})


async def keys(request: web.Request) -> web.Response:
    """`GET /keys`: the public keys and certificates of the services this process plays."""
    state = request.app[STATE]
    role = state.settings.role
    return _json(state.key_material.published(eu=role.serves_eu, domestic=role.serves_domestic))


async def get_stats(request: web.Request) -> web.Response:
    """`GET /_stats`: in-flight, peak in-flight, queued and totals by endpoint and outcome."""
    return _json(request.app[STATE].stats.snapshot())


async def reset_stats(request: web.Request) -> web.Response:
    """`POST /_stats/reset`: zero peak and totals."""
    stats = request.app[STATE].stats
    stats.reset()
    return _json(stats.snapshot())


async def put_control(request: web.Request) -> web.Response:
    """`PUT /_control`: change latency, capacity, error rate or the pending fault."""
    behaviour = request.app[STATE].behaviour
    try:
        body = orjson.loads(await request.read())
        behaviour.update(body)
    except (orjson.JSONDecodeError, ValueError, FaultSpecError) as exc:
        return text_response(400, f"bad control request: {exc}")
    return _json(behaviour.describe())


async def get_control(request: web.Request) -> web.Response:
    """`GET /_control`: the current control state."""
    return _json(request.app[STATE].behaviour.describe())


def _drained(handler: Handler) -> Handler:
    """`handler`, tracked while it runs so that a shutdown can wait for it, then cancel it."""

    async def tracked(request: web.Request) -> web.StreamResponse:
        running = request.app[STATE].running
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - aiohttp runs every handler in a task
        running.add(task)
        try:
            return await handler(request)
        finally:
            running.discard(task)

    return tracked


def add_routes(app: web.Application, *, serve_eu: bool, serve_domestic: bool) -> None:
    """Register the endpoints of the roles played plus the fake's own endpoints."""
    if serve_eu:
        app.router.add_post("/get_credential", _drained(get_credential))
    if serve_domestic:
        app.router.add_post("/prepare_issue", _drained(prepare_issue))
        app.router.add_post("/issue", _drained(issue))
        app.router.add_post("/issue_static", _drained(issue_static))
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/keys", keys, allow_head=False)
    app.router.add_get("/_stats", get_stats, allow_head=False)
    app.router.add_post("/_stats/reset", reset_stats)
    app.router.add_put("/_control", put_control)
    app.router.add_get("/_control", get_control, allow_head=False)
