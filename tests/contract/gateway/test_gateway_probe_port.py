"""`serve --probe-port`: a second listener for the orchestrator's probes, and only for them."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time

from signing_gateway.api import examples
from tests.contract.gateway.gateway_process import (
    GatewayProcess,
    free_port,
    gateway_env,
    running_gateway_process,
)
from tests.support.fake_signer_process import FakeSignerProcess


def _get(
    port: int, path: str, method: str = "GET", body: bytes | None = None
) -> tuple[int, str, bytes]:
    """One request on a new connection: status, content type and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def _head(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """One HEAD on a new connection, read to its end: status, headers and what followed them."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"HEAD %s HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n" % path.encode()
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, rest


def _signer_totals(signer: FakeSignerProcess) -> dict[str, dict[str, int]]:
    """What the fake signer has counted, by endpoint and outcome."""
    totals: dict[str, dict[str, int]] = signer.stats()["totals"]
    return totals


def _refused(port: int) -> bool:
    """Whether nothing listens on `port` any more."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _log_holding(gateway: GatewayProcess, text: str, limit: float = 5.0) -> str:
    """The gateway's log once it holds `text` (lines are written every 50 ms, not at once)."""
    deadline = time.monotonic() + limit
    while text not in (log := gateway.log()):
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.01)
    return log


def test_the_probe_port_answers_probes_and_refuses_everything_else(eu_signer, domestic_signer):
    """Probes answer GET and HEAD on both ports; /v1 on the probe port is 404 and signs nothing."""
    probe_port = free_port()
    env = gateway_env(
        eu_signer.base_url, domestic_signer.base_url, SIGNING_GATEWAY_LOG_LEVEL="INFO"
    )
    with running_gateway_process(env, "--probe-port", str(probe_port)) as gateway:
        main_port = int(gateway.base_url.rsplit(":", 1)[1])
        answers = {path: _get(probe_port, path) for path in ("/healthz", "/readyz", "/metrics")}
        heads = {path: _head(probe_port, path) for path in ("/healthz", "/readyz", "/metrics")}
        refused_head = _head(probe_port, "/v1/keys")
        main_heads = {path: _head(main_port, path) for path in ("/healthz", "/v1/keys")}
        keys_length = len(_get(main_port, "/v1/keys")[2])
        before = _signer_totals(eu_signer)
        status, content_type, body = _get(
            probe_port, "/v1/dcc", "POST", json.dumps(examples.EU_VACCINATION).encode()
        )
        after = _signer_totals(eu_signer)
        scrape = _get(probe_port, "/metrics")[2].decode()
        main_health, _, _ = _get(main_port, "/healthz")
        log = _log_holding(gateway, json.loads(body)["requestId"])
        exit_code = gateway.stop()
    assert {path: answer[0] for path, answer in answers.items()} == {
        "/healthz": 200,
        "/readyz": 200,
        "/metrics": 200,
    }
    assert json.loads(answers["/healthz"][2]) == {"status": "ok"}
    # HEAD: the GET's status and headers, and not one byte of body on the wire.
    assert {path: (status, rest) for path, (status, _, rest) in heads.items()} == {
        "/healthz": (200, b""),
        "/readyz": (200, b""),
        "/metrics": (200, b""),
    }
    for path, (_, fields, _) in heads.items():
        assert fields["content-type"] == answers[path][1]
        assert int(fields["content-length"]) > 0
    assert int(heads["/healthz"][1]["content-length"]) == len(answers["/healthz"][2])
    assert (refused_head[0], refused_head[2]) == (404, b"")
    assert {path: (status, rest) for path, (status, _, rest) in main_heads.items()} == {
        "/healthz": (200, b""),
        "/v1/keys": (200, b""),
    }
    assert int(main_heads["/v1/keys"][1]["content-length"]) == keys_length
    assert status == 404
    assert content_type == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 404
    assert "/healthz, /metrics, /readyz" in problem["detail"]
    assert after == before  # the refused request reached no signer
    # Both refusals counted and logged as requests no route matched, as on the main port.
    assert 'gateway_responses_total{route="unmatched",status="404"} 2.0' in scrape
    refusals = [
        (line["method"], line["request_id"] == problem["requestId"])
        for line in map(json.loads, (line for line in log.splitlines() if line.startswith("{")))
        if line.get("logger") == "signing_gateway.access" and line["route"] == "unmatched"
    ]
    assert refusals == [("HEAD", False), ("POST", True)]
    assert main_health == 200
    assert f"probes on http://127.0.0.1:{probe_port} (/healthz, /metrics, /readyz only)" in log
    assert exit_code == 0
    assert _refused(probe_port)  # closed with the server


def test_a_probe_port_in_use_stops_the_gateway_with_a_reason(eu_signer, domestic_signer):
    """A probe port that cannot be bound ends the process with status 1 and says why."""
    env = gateway_env(eu_signer.base_url, domestic_signer.base_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "signing_gateway", "serve", "--host", "127.0.0.1",
             "--port", str(free_port()), "--probe-port", str(port)],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"probe port {port}" in result.stdout + result.stderr


def test_the_probe_port_needs_a_single_worker() -> None:
    """With uvicorn's supervisor (one socket for all workers) the option is refused."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "signing_gateway", "serve", "--workers", "2",
         "--probe-port", str(free_port())],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--probe-port (SIGNING_GATEWAY_PROBE_PORT) needs --workers 1" in result.stderr
