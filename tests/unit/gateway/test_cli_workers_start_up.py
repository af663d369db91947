"""`serve --workers N` when a worker cannot start: the supervisor stops, and `serve` exits 3."""

from __future__ import annotations

from pathlib import Path

import orjson

from signing_gateway.security.tokens import LocalTokenIssuer
from tests.contract.gateway.gateway_process import free_port
from tests.support.credentials import make_dsc
from tests.unit.gateway.test_cli_settings import (
    DEV_TRUST,
    INVALID,
    INVALID_LINE,
    _run,
    _serve_code,
    _uvicorn_factory_code,
)


def _auth_and_trust(tmp_path: Path) -> dict[str, str]:
    """Settings a worker passes every check with, up to fetching the JWKS."""
    dsc = tmp_path / "dsc.pem"
    dsc.write_bytes(make_dsc(["test"]).pem)
    return {
        "AUTH__MODE": "jwt",
        "AUTH__AUDIENCE": "signing-gateway",
        "AUTH__ISSUER": "https://idp.internal/",
        "TRUST__EU_CERTIFICATES": orjson.dumps([str(dsc)]).decode(),
    }


def test_a_worker_that_fails_its_start_up_ends_serve_with_status_3(tmp_path: Path) -> None:
    """A JWKS URL nobody answers: each worker's lifespan fails; `serve` exits 3, as with one.

    uvicorn's supervisor stops on such a worker and returns as after a SIGTERM: `serve`
    exited 0, so a supervisor restarting on failure only took a gateway that never served for
    one that had finished.
    """
    done = _run(
        _serve_code("--workers", "2"),
        PORT=str(free_port()),
        AUTH__JWKS_URL=f"http://127.0.0.1:{free_port()}/jwks",
        **_auth_and_trust(tmp_path),
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert "could not fetch the JWKS at start-up" in done.stderr


def test_a_worker_refusing_its_settings_stops_the_supervisor(tmp_path: Path) -> None:
    """A file gone since `serve` checked it: the worker's own check refuses it, and all stop.

    The worker's factory ends it with status 2, which uvicorn's supervisor took for a worker
    that died, and started again without end while nothing served.
    """
    issuer = LocalTokenIssuer(issuer="https://idp.internal/", audience="signing-gateway")
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps(issuer.jwks()))
    # `serve`'s own check passed on this file; it is gone by the time the workers check it.
    gone_since_the_check = (
        "import pathlib; from signing_gateway import cli, serving\n"
        "settings, problems = cli.checked_settings(cli.flag_variables(cli._parser()))\n"
        "assert settings is not None and not problems, problems\n"
        f"pathlib.Path({str(jwks)!r}).unlink()\n"
        "supervised = serving.SupervisedConfig(\n"
        "    'signing_gateway.app:create_served_app', gateway_log_level='INFO',\n"
        "    gateway_log_format='json', factory=True, host='127.0.0.1',\n"
        f"    port={free_port()}, workers=2, log_config=None,\n"
        ")\n"
        "raise SystemExit(serving.run_workers(supervised))"
    )
    done = _run(gone_since_the_check, AUTH__JWKS_FILE=str(jwks), **_auth_and_trust(tmp_path))
    assert done.returncode == 3, done.stderr[-2000:]
    assert "SIGNING_GATEWAY_AUTH__JWKS_FILE: no such file" in done.stderr
    assert "died" not in done.stderr  # no worker was started again


def test_uvicorns_own_workers_stop_on_a_worker_refusing_its_settings(tmp_path: Path) -> None:
    """`uvicorn --factory ...:create_served_app --workers 2` with a value the factory refuses.

    Its supervisor never reads the settings; each worker refuses them. The workers exited 2,
    which the supervisor took for workers that died: it started them again for ever. It now
    stops, though with uvicorn's own exit status, 0 (`serve --workers N` exits 3).
    """
    code = _uvicorn_factory_code().replace("'--port'", "'--workers', '2', '--port'")
    done = _run(code, AUTH__MODE="disabled", **DEV_TRUST, **INVALID)
    assert "failed to start, stopping the parent process" in done.stderr, done.stderr[-2000:]
    assert INVALID_LINE in done.stderr
    assert "died" not in done.stderr
