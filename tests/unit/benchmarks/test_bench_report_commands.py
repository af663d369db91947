"""docs/benchmarks.md prints how every server was started and the wrk commands, runnable."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench import auth as bench_auth
from bench import procs, report
from bench.wrk import Load, shown_command, wrk_command

SIGNER = "http://127.0.0.1:41001"


def _gateway_started(tmp_path: Path, **settings: Any) -> dict[str, Any]:
    """A gateway start as procs.gateway records it, with the run's own ports and paths."""
    auth = bench_auth.BenchAuth(jwks_file=tmp_path / "jwks.json", token="t")
    env = procs.gateway_env(
        SIGNER, auth=auth, transport="aiohttp", max_in_flight=1024, deadline_s=20.0
    )
    env |= settings
    command = [sys.executable, "-m", "signing_gateway", "serve", "--port", "41002",
               "--backlog", "16384", "--probe-port", "41003"]  # fmt: skip
    return procs.described(
        command,
        env,
        exact={"41002": "$PORT", "41003": "$PROBE_PORT"},
        within={SIGNER: procs.SIGNER_URL_SHOWN, str(tmp_path): procs.RUN_DIR},
    )


def test_a_start_is_shown_with_the_runs_ports_and_paths_as_variables(tmp_path: Path) -> None:
    """Ports, the signer's URL and the run's directory vary per run: shown as variables."""
    started = _gateway_started(tmp_path)
    assert started["command"] == (
        "python -m signing_gateway serve --port $PORT --backlog 16384 --probe-port $PROBE_PORT"
    )
    env = started["env"]
    assert env["SIGNING_GATEWAY_AUTH__MODE"] == "jwt"
    assert env["SIGNING_GATEWAY_AUTH__JWKS_FILE"] == "$RUN_DIR/jwks.json"
    assert env["SIGNING_GATEWAY_EU_SIGNER__URL"] == "http://127.0.0.1:$SIGNER_PORT"
    assert env["SIGNING_GATEWAY_EU_SIGNER__RESILIENCE__MAX_IN_FLIGHT"] == "1024"


def test_the_wrk_command_carries_the_body_file_and_the_token(tmp_path: Path) -> None:
    """As printed it runs: the environment bench/dcc.lua reads, then wrk."""
    load = Load(tmp_path / "dcc.json", bench_auth.BenchAuth(tmp_path / "jwks.json", "secret"))
    command = wrk_command(
        "http://127.0.0.1:41002/v1/dcc", connections=64, seconds=15, threads=2, timeout_s=30
    )
    shown = shown_command(command, load)
    assert shown.startswith('BENCH_BODY_FILE=$RUN_DIR/dcc.json BENCH_TOKEN="$BENCH_TOKEN" wrk ')
    assert shown.endswith(" -s bench/dcc.lua --latency http://127.0.0.1:$PORT/v1/dcc")
    assert "secret" not in shown


def test_the_report_prints_the_gateway_start_in_full_and_what_other_runs_change(
    tmp_path: Path,
) -> None:
    """S1's gateway settings in full as shell lines; the other gateway runs as differences."""
    s1 = _gateway_started(tmp_path)
    s4 = _gateway_started(tmp_path, SIGNING_GATEWAY_REQUEST_DEADLINE_SECONDS="60")
    signer = {"command": "python -m fake_signer --port $SIGNER_PORT --latency-ms 1000", "env": {}}
    proxy = {
        "command": "python -m uvicorn --factory bench.passthrough:create_app --port $PORT",
        "env": {"BENCH_SIGNER_URL": "http://127.0.0.1:$SIGNER_PORT"},
    }
    results = {
        "S1": {"started": {"signer": signer, "server": s1}},
        "S4": {
            "started": {"signer": signer, "server": s4},
            "passthrough-proxy": {"started": {"signer": signer, "server": proxy}},
        },
    }
    text = "\n".join(report.servers_section(results))
    assert "SIGNING_GATEWAY_AUTH__MODE=jwt \\\n" in text
    assert "SIGNING_GATEWAY_AUTH__JWKS_FILE=$RUN_DIR/jwks.json \\\n" in text
    assert "SIGNING_GATEWAY_EU_SIGNER__RESILIENCE__MAX_WAIT_SECONDS=20.0 \\\n" in text
    assert "\\\n" + s1["command"] + "\n```" in text
    s4 = "- S4 gateway, 10,000 in flight: as S1, but `SIGNING_GATEWAY_REQUEST_DEADLINE_SECONDS="
    assert s4 in text
    assert "BENCH_SIGNER_URL=http://127.0.0.1:$SIGNER_PORT \\\n" + proxy["command"] in text
    assert signer["command"] in text
    assert "python -m bench.auth" in text


def test_the_report_says_so_when_a_run_recorded_no_starts() -> None:
    """Results from before the starts were recorded."""
    assert report.servers_section({"S3": {"gateway": {"rps": 1.0}}}) == [
        "Not recorded in this run's results."
    ]


def test_the_bench_auth_command_writes_what_the_printed_commands_read(
    tmp_path: Path, capsys: Any
) -> None:
    """`python -m bench.auth DIR`: the body and JWKS files, and the token on stdout."""
    assert bench_auth.main([str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip()
    assert (tmp_path / "dcc.json").read_text().startswith("{")
    assert (tmp_path / "jwks.json").exists()
    assert token.count(".") == 2
