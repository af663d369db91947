"""Every fault mode, the control API, stats and the seeded error rate, against a real process."""

from __future__ import annotations

import asyncio
import itertools
import time

import base45
import cbor2
import httpx
import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.contract.fake_signer.signer_wire import (
    ATTRIBUTES,
    JSON_HEADERS,
    b64d,
    cose_parts,
    dsc_for,
    eu_body,
    nested_arrays,
    published,
    stats,
    verify_with_pycose,
    wait_for,
)
from tests.support.core_wait import THIS_THREAD, Latencies, main_thread

FAULT = "X-Fake-Signer-Fault"


async def sign(client, fault=None, **kwargs):
    """POST /get_credential, optionally with a fault header."""
    headers = {} if fault is None else {FAULT: fault}
    return await client.post("/get_credential", json=eu_body(), headers=headers, **kwargs)


async def test_delay_adds_latency(client):
    """`delay=<ms>` answers normally, that much later."""
    started = time.monotonic()
    response = await sign(client, "delay=300")
    assert response.status_code == 200
    assert 0.3 <= time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("spec", "retry_after"), [("status=503;retry-after=7", "7"), ("status=502", None)]
)
async def test_status_answers_plain_text(client, spec, retry_after):
    """`status=<code>` answers that code in plain text, with Retry-After when asked."""
    response = await sign(client, spec)
    assert response.status_code == int(spec.split(";")[0].split("=")[1])
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers.get("retry-after") == retry_after


@pytest.mark.parametrize("code", [204, 205, 304])
async def test_status_without_content_is_answered_bare(client, code):
    """204, 205 and 304 must have no content (RFC 9110): no body, no Content-Type either."""
    response = await sign(client, f"status={code};retry-after=3")
    assert response.status_code == code
    assert response.content == b""
    assert "content-type" not in response.headers
    assert response.headers["retry-after"] == "3"
    assert int(response.headers.get("content-length", "0")) == 0
    # The connection stays usable: nothing of a body was left on it for the next answer.
    assert (await sign(client)).status_code == 200
    assert (await stats(client))["totals"] == {"get_credential": {"fault:status": 1, "ok": 1}}


async def test_reset_drops_the_connection_and_server_survives(client):
    """`reset` gives the client a connection reset at once, no response; the server survives."""
    started = time.monotonic()
    with pytest.raises(httpx.ReadError):
        await sign(client, "reset")
    assert time.monotonic() - started < 2
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await stats(client))["totals"]["get_credential"] == {"fault:reset": 1}


async def test_hang_until_client_gives_up(client):
    """`hang` never answers: the client timeout fires, the slot is freed, the server is healthy."""
    with pytest.raises(httpx.ReadTimeout):
        await sign(client, "hang", timeout=0.5)
    assert (await client.get("/healthz")).status_code == 200
    done = await wait_for(lambda s: s["inFlight"] == 0 and s["totals"], client)
    assert done["totals"]["get_credential"] == {"fault:hang": 1}


async def _leave_before_the_fault(client):
    """Send `reset` and `hang` with clients that give up long before the 1 s latency is over."""
    for spec in ("reset", "hang"):
        with pytest.raises(httpx.ReadTimeout):
            await sign(client, spec, timeout=0.3)


async def test_reset_and_hang_left_in_the_latency_wait_are_cancelled(client):
    """A reset or hang whose client leaves during the latency wait was never applied: cancelled."""
    await client.put("/_control", json={"latencyMs": 1000, "latencyDistribution": "fixed"})
    await _leave_before_the_fault(client)
    done = await wait_for(
        lambda s: sum(s["totals"].get("get_credential", {}).values()) == 2, client
    )
    assert done["totals"]["get_credential"] == {"cancelled": 2}


async def test_reset_and_hang_left_in_the_queue_are_cancelled(client):
    """A reset or hang whose client leaves while queued for a slot was never applied: cancelled."""
    control = {"latencyMs": 1000, "latencyDistribution": "fixed", "capacity": 1}
    await client.put("/_control", json=control)
    holder = asyncio.create_task(sign(client))
    await wait_for(lambda s: s["inFlight"] == 1, client)
    await _leave_before_the_fault(client)
    assert (await holder).status_code == 200
    done = await wait_for(
        lambda s: sum(s["totals"].get("get_credential", {}).values()) == 3, client
    )
    assert done["totals"]["get_credential"] == {"ok": 1, "cancelled": 2}


@pytest.mark.parametrize(
    ("spec", "body"),
    [
        ("malformed", b'{"credential": "HC1:'),
        ("malformed=truncated", b'{"credential": "HC1:'),
        ("malformed=shape", b'{"unexpected": "shape"}'),
    ],
)
async def test_malformed_is_200_json_without_contract_json(client, spec, body):
    """`malformed` answers 200 JSON that is cut off (default) or of another shape."""
    response = await sign(client, spec)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == body


async def test_bad_signature_does_not_verify(client):
    """`bad-signature` keeps kid and payload but the signature fails against the right DSC."""
    response = await sign(client, "bad-signature")
    credential = response.json()["credential"]
    entry, dsc = dsc_for(await published(client), "vaccination")
    assert cose_parts(credential)[0][4] == b64d(entry["kid"])
    assert not verify_with_pycose(credential, dsc)


async def test_wrong_kid_is_signed_by_the_right_key(client):
    """`wrong-kid` carries another kid, yet the signature verifies with the usage's own DSC."""
    credential = (await sign(client, "wrong-kid")).json()["credential"]
    keys = await published(client)
    entry, dsc = dsc_for(keys, "vaccination")
    kid = cose_parts(credential)[0][4]
    assert kid != b64d(entry["kid"])
    # Another published DSC's kid, so a verifier finds a certificate, just not the right one.
    assert kid in {b64d(other["kid"]) for other in keys["eu"]}
    assert verify_with_pycose(credential, dsc)


async def test_slow_body_trickles(signer, client):
    """`slow-body=<ms>` sends headers at once and the complete, valid body over that time.

    "At once" is judged less the time the signer's loop and this client waited for a core,
    which a machine shared with other work adds to the wall time (see the queue test).
    """
    started = time.monotonic()
    request = client.build_request(
        "POST", "/get_credential", json=eu_body(), headers={FAULT: "slow-body=600"}
    )
    head = Latencies((main_thread(signer.process.pid), THIS_THREAD))
    with head.timed():
        response = await client.send(request, stream=True)
    body = await response.aread()
    total = time.monotonic() - started
    await response.aclose()
    assert response.status_code == 200
    assert head.served()[0] < 0.3, head.slowest(1)
    assert total >= 0.55
    assert orjson.loads(body)["credential"].startswith("HC1:")
    assert response.headers["content-length"] == str(len(body))


async def test_slow_body_comes_in_ten_pieces(client):
    """`slow-body` writes the body in 10 pieces spread evenly over the time given."""
    request = client.build_request(
        "POST", "/get_credential", json=eu_body(), headers={FAULT: "slow-body=1350"}
    )
    response = await client.send(request, stream=True)
    arrivals = [time.monotonic() async for _ in response.aiter_raw()]
    await response.aclose()
    # Pieces 150 ms apart: a read that follows the one before within 50 ms is the same piece.
    pieces = 1 + sum(1 for a, b in itertools.pairwise(arrivals) if b - a > 0.05)
    assert 7 <= pieces <= 10, pieces
    # The first piece comes at once, the last after the whole time (a timer may fire early).
    assert arrivals[-1] - arrivals[0] >= 1.3


async def test_slow_body_does_not_turn_an_error_into_a_200(client):
    """A random 500 with a `slow-body` fault is the 500, answered at once, not a trickled 200."""
    await client.put("/_control", json={"errorRate": 1})
    started = time.monotonic()
    response = await sign(client, "slow-body=2000")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/plain")
    assert time.monotonic() - started < 1.5


async def test_domestic_signature_faults(client):
    """`bad-signature` and `wrong-kid` also corrupt the domestic static QR."""
    (entry,) = (await client.get("/keys")).json()["domestic"]
    results = {}
    for spec in ("bad-signature", "wrong-kid"):
        response = await client.post(
            "/issue_static",
            json={"credentialAttributes": ATTRIBUTES},
            headers={**JSON_HEADERS, FAULT: spec},
        )
        kid, attributes_cbor, signature = cbor2.loads(base45.b45decode(response.json()["qr"][4:]))
        results[spec] = (kid, attributes_cbor, signature)
    key = Ed25519PublicKey.from_public_bytes(b64d(entry["publicKey"]))
    kid, attributes_cbor, signature = results["bad-signature"]
    assert kid == b64d(entry["kid"])
    with pytest.raises(InvalidSignature):
        key.verify(signature, b"NL2-static\x00" + attributes_cbor)
    kid, attributes_cbor, signature = results["wrong-kid"]
    assert kid != b64d(entry["kid"])
    key.verify(signature, b"NL2-static\x00" + attributes_cbor)


@pytest.mark.parametrize(
    "spec",
    [
        "explode",
        "status",
        "status=abc",
        "delay=-1",
        "reset=1",
        "malformed=x",
        "delay=1e400",
        "slow-body=1e400",
        # Finite but no wait any client sees the end of: a hang in disguise.
        "delay=1e300",
        "slow-body=600001",
        # More digits than int() takes: once a ValueError the header path answered with a 500.
        pytest.param("status=" + "5" * 4301, id="status-of-4301-digits"),
        pytest.param("status=503;retry-after=" + "9" * 5000, id="retry-after-of-5000-digits"),
    ],
)
async def test_bad_fault_header_is_400(client, spec):
    """A fault header that breaks the grammar is refused with 400, counted as a bad request."""
    response = await sign(client, spec)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith(f"bad {FAULT}: ")
    assert (await stats(client))["totals"] == {"get_credential": {"bad_request": 1}}


async def test_status_after_thousands_of_zeros_is_that_status(client):
    """Leading zeros are still digits of the status, more of them than int() takes too."""
    response = await sign(client, "status=" + "0" * 4301 + "503")
    assert response.status_code == 503
    assert (await stats(client))["totals"] == {"get_credential": {"fault:status": 1}}


async def test_control_fault_applies_to_the_next_n_requests(client):
    """`_control` fault with faultCount 2 hits two signings, then signing is normal again."""
    response = await client.put("/_control", json={"fault": "status=503", "faultCount": 2})
    assert response.json()["fault"] == "status=503"
    assert response.json()["faultCount"] == 2
    # A header fault wins and does not use up the control fault.
    assert (await sign(client, "status=418")).status_code == 418
    assert [(await sign(client)).status_code for _ in range(3)] == [503, 503, 200]
    assert (await client.get("/_control")).json()["fault"] is None


async def test_control_fault_default_count_and_until_cleared(client):
    """A fault defaults to one request; faultCount -1 keeps it until `fault: null`."""
    await client.put("/_control", json={"fault": "status=500"})
    assert [(await sign(client)).status_code for _ in range(2)] == [500, 200]
    await client.put("/_control", json={"fault": "status=429;retry-after=2", "faultCount": -1})
    statuses = [(await sign(client)).status_code for _ in range(4)]
    assert statuses == [429] * 4
    await client.put("/_control", json={"fault": None})
    assert (await sign(client)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"fault": "nonsense"},
        {"capacity": 0},
        {"errorRate": 1.5},
        {"overflow": "drop"},
        {"latencyMs": -1},
        {"unknown": 1},
        {"latency_ms": 1},
        {"faultCount": 5},
        {"fault": None, "faultCount": 2},
        {"fault": "hang", "faultCount": 0},
        {"fault": "hang", "faultCount": -2},
        {"jitterMs": -1},
        {"capacity": True},
        {"latencyMs": 1e300},
        {"jitterMs": 600001},
    ],
)
async def test_control_refuses_invalid_updates(client, body):
    """Invalid control updates, fault counts that fault nothing too, are 400 and change nothing."""
    before = (await client.get("/_control")).json()
    response = await client.put("/_control", json=body)
    assert response.status_code == 400
    assert response.text.startswith("bad control request: ")
    assert (await client.get("/_control")).json() == before


@pytest.mark.parametrize("name", ["latencyDistribution", "overflow"])
async def test_control_refuses_a_choice_nested_as_deep_as_json_allows(client, name):
    """A choice of arrays nested 1,000 deep is a 400 that changes nothing, not a 500."""
    before = (await client.get("/_control")).json()
    raw = b'{"' + name.encode() + b'":' + nested_arrays() + b"}"
    response = await client.put("/_control", content=raw)
    assert response.status_code == 400, response.text
    assert response.text.startswith("bad control request: "), response.text
    assert (await client.get("/_control")).json() == before


async def test_control_latency_applies(client):
    """`latencyMs` via `_control` slows every signing down."""
    state = (
        await client.put("/_control", json={"latencyMs": 250, "latencyDistribution": "fixed"})
    ).json()
    assert state["latencyMs"] == 250
    started = time.monotonic()
    assert (await sign(client)).status_code == 200
    assert time.monotonic() - started >= 0.25


@pytest.mark.parametrize("endpoint", ["get_credential", "issue_static"])
async def test_a_client_that_leaves_while_sending_the_body_is_counted_cancelled(
    signer, client, endpoint
):
    """A signing request whose client goes away half way through its body counts `cancelled`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", signer.port)
    writer.write(
        f"POST /{endpoint} HTTP/1.1\r\nHost: signer\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    # aiohttp answers 100 Continue as it calls the handler, which then waits for the body.
    assert await asyncio.wait_for(reader.readline(), 5) == b"HTTP/1.1 100 Continue\r\n"
    writer.write(b'{"keyUsage": ')
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await wait_for(lambda current: current["totals"] == {endpoint: {"cancelled": 1}}, client)


async def test_stats_count_outcomes_and_reset(client):
    """/_stats counts outcomes per endpoint; reset zeroes totals and peak."""
    await sign(client)
    await sign(client)
    await sign(client, "status=503")
    await client.post("/get_credential", content=b"nope")
    await client.post(
        "/issue_static", json={"credentialAttributes": ATTRIBUTES}, headers=JSON_HEADERS
    )
    current = await stats(client)
    assert current["totals"] == {
        "get_credential": {"ok": 2, "fault:status": 1, "bad_request": 1},
        "issue_static": {"ok": 1},
    }
    assert current["inFlight"] == 0
    assert current["peakInFlight"] == 1
    assert current["queued"] == 0
    reset = (await client.post("/_stats/reset")).json()
    assert reset == {"inFlight": 0, "peakInFlight": 0, "queued": 0, "totals": {}}


async def test_a_random_error_is_a_plain_500_counted_as_error(client):
    """Pin that a signing the error rate fails is a plain-text 500 that /_stats counts `error`."""
    await client.put("/_control", json={"errorRate": 1})
    response = await sign(client)
    assert (response.status_code, response.text) == (500, "simulated signer error")
    assert response.headers["content-type"].startswith("text/plain")
    assert (await stats(client))["totals"] == {"get_credential": {"error": 1}}


async def test_a_body_past_the_size_limit_is_a_413_counted_as_bad_request(client):
    """Pin that a signing body over 1 MiB is a plain-text 413 that /_stats counts as input.

    aiohttp refused it before the handler could count it: such requests were in no total.
    """
    dcc = {"pad": "x" * 1024 * 1024}
    eu = await client.post("/get_credential", json={**eu_body(), "dcc": dcc})
    attributes = {**ATTRIBUTES, "category": "x" * 1024 * 1024}
    body = {"credentialAttributes": attributes}
    domestic = await client.post("/issue_static", json=body, headers=JSON_HEADERS)
    assert (await stats(client))["totals"] == {
        "get_credential": {"bad_request": 1},
        "issue_static": {"bad_request": 1},
    }
    for response in (eu, domestic):
        assert response.status_code == 413
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.text == "body is larger than 1048576 bytes"


def statuses(base_url, count):
    """Statuses of `count` signings sent one after another."""
    with httpx.Client(base_url=base_url, timeout=10) as http:
        return [http.post("/get_credential", json=eu_body()).status_code for _ in range(count)]


def test_error_rate_is_reproducible_with_a_seed(fake_signer_factory):
    """--error-rate with --seed gives the same 200/500 sequence again after reseeding."""
    signer = fake_signer_factory("--role", "eu", "--error-rate", "0.5", "--seed", "7")
    first = statuses(signer.base_url, 40)
    assert set(first) == {200, 500}
    assert 8 <= first.count(500) <= 32
    with httpx.Client(base_url=signer.base_url, timeout=10) as http:
        http.put("/_control", json={"seed": 7}).raise_for_status()
        error = http.post("/get_credential", json=eu_body(), headers={FAULT: "delay=0"})
        while error.status_code != 500:
            error = http.post("/get_credential", json=eu_body())
        assert error.headers["content-type"].startswith("text/plain")
        http.put("/_control", json={"seed": 7}).raise_for_status()
    assert statuses(signer.base_url, 40) == first
