"""Every gateway the bench starts checks the callers' tokens, and wrk sends one."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import jwt
import pytest

from bench import auth as bench_auth
from bench import procs, soak
from bench.wrk import Load, run_wrk
from signing_gateway.api import examples
from signing_gateway.security.settings import SCOPE_DCC_SIGN
from signing_gateway.settings import Settings


def test_the_gateway_under_test_runs_with_jwt_auth_against_the_runs_keys(tmp_path: Path) -> None:
    """Its settings are production's for auth: jwt, the run's JWKS file, issuer, audience."""
    auth = bench_auth.make(tmp_path)
    env = procs.gateway_env(
        "http://127.0.0.1:9", auth=auth, transport="aiohttp", max_in_flight=8, deadline_s=5
    )
    soaked = soak._gateway_env("http://127.0.0.1:9", "http://127.0.0.1:10", auth)
    for settings in (env, soaked):
        assert settings["SIGNING_GATEWAY_AUTH__MODE"] == "jwt"
        assert settings["SIGNING_GATEWAY_AUTH__JWKS_FILE"] == str(tmp_path / "jwks.json")
        assert settings["SIGNING_GATEWAY_AUTH__ISSUER"] == auth.issuer
        assert settings["SIGNING_GATEWAY_AUTH__AUDIENCE"] == auth.audience


def test_the_settings_the_bench_gives_are_complete_for_jwt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway reads them as jwt with nothing missing (it would refuse to start)."""
    auth = bench_auth.make(tmp_path)
    for name, value in auth.gateway_env().items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.auth.mode == "jwt"
    assert settings.auth.missing_for_jwt() == []


def test_the_token_is_representative_in_size_and_outlives_the_run(tmp_path: Path) -> None:
    """About 700 bytes, signed by the JWKS the gateway reads, for /v1/dcc, valid for hours."""
    before = time.time()
    auth = bench_auth.make(tmp_path)
    assert abs(len(auth.token) - bench_auth.TOKEN_BYTES) <= 4
    jwks = jwt.PyJWKSet.from_dict(json.loads(auth.jwks_file.read_text()))
    claims = jwt.decode(
        auth.token,
        key=jwks.keys[0],
        algorithms=["ES256"],
        audience=auth.audience,
        issuer=auth.issuer,
    )
    assert SCOPE_DCC_SIGN in claims["scope"].split()
    assert claims["exp"] >= before + bench_auth.RUN_VALID_SECONDS - 1


def test_wrk_is_given_the_body_file_and_the_token(tmp_path: Path) -> None:
    """bench/dcc.lua reads both from its environment."""
    auth = bench_auth.make(tmp_path)
    env = Load(tmp_path / "dcc.json", auth).env()
    assert env == {"BENCH_BODY_FILE": str(tmp_path / "dcc.json"), "BENCH_TOKEN": auth.token}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
def test_the_bench_wiring_is_answered_and_a_refused_token_counts_as_errors(
    tmp_path: Path,
) -> None:
    """The gateway, started as the bench starts it, answers wrk's requests 200.

    A token it does not trust is refused (401), and every refusal is one of the run's errors.
    """
    body = tmp_path / "dcc.json"
    body.write_text(json.dumps(examples.EU_VACCINATION))
    (tmp_path / "trusted").mkdir()
    (tmp_path / "stranger").mkdir()
    auth = bench_auth.make(tmp_path / "trusted")
    stranger = bench_auth.make(tmp_path / "stranger")  # same issuer name, other key
    with (
        procs.fake_signer(tmp_path, latency_ms=0, keys_dir=tmp_path / "keys") as signer,
        procs.gateway(tmp_path, signer.url, auth=auth, max_in_flight=16) as gateway,
    ):
        url = gateway.url + "/v1/dcc"
        good = run_wrk(url, Load(body, auth), connections=2, seconds=1, timeout_s=10)
        refused = run_wrk(url, Load(body, stranger), connections=2, seconds=1, timeout_s=10)
        started = {"gateway": gateway.started, "signer": signer.started}
    assert good.requests > 0
    assert good.errors == 0
    assert good.ok == good.requests
    assert refused.requests > 0
    assert refused.status_errors == refused.requests
    assert refused.errors >= refused.requests
    assert refused.ok == 0
    # What the report prints of these starts: the run's ports and directory as variables.
    assert "--port $PORT " in started["gateway"]["command"]
    assert "--probe-port $PROBE_PORT" in started["gateway"]["command"]
    gateway_env = started["gateway"]["env"]
    assert gateway_env["SIGNING_GATEWAY_AUTH__JWKS_FILE"] == "$RUN_DIR/jwks.json"
    assert gateway_env["SIGNING_GATEWAY_EU_SIGNER__URL"] == "http://127.0.0.1:$SIGNER_PORT"
    assert "--port $SIGNER_PORT " in started["signer"]["command"]
    assert "--keys-dir $RUN_DIR/keys " in started["signer"]["command"]
    assert good.command.startswith('BENCH_BODY_FILE=$RUN_DIR/dcc.json BENCH_TOKEN="$BENCH_TOKEN"')
