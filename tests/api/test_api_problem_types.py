"""Every problem type the gateway can answer with is documented, with its status."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import respx

from signing_gateway.api import examples
from signing_gateway.app import create_app
from signing_gateway.errors import PROBLEM_BASE
from tests.support.gateway import SignerKeys, make_settings, running_gateway
from tests.support.problem_types import answered_problem_types

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _uri(name: str) -> str:
    return name if ":" in name else PROBLEM_BASE + name


def _documented_type(spec: dict[str, Any]) -> str:
    """What the served document says of a problem's `type`."""
    described: str = spec["components"]["schemas"]["Problem"]["properties"]["type"].get(
        "description", ""
    )
    return described


def _documented_statuses(described: str) -> dict[str, set[int]]:
    """Each type the description lists, by its line "- `type` (status, ...): when"."""
    return {
        match[1]: {int(status) for status in match[2].split(", ")}
        for match in re.finditer(r"^- `([^`]+)` \(([\d, ]+)\)", described, re.MULTILINE)
    }


async def test_every_type_the_source_answers_with_is_documented(gateway: httpx.AsyncClient):
    """Pin that /openapi.json and docs/architecture.md name each problem type the code has.

    Neither listed them: a caller met `body-too-large` or `signer-bad-response` documented
    nowhere. (`signer-failed` is the base of the signer failures, never answered as itself.)
    """
    described = _documented_type((await gateway.get("/openapi.json")).json())
    architecture = ARCHITECTURE.read_text(encoding="utf-8")
    names = sorted(answered_problem_types() - {"signer-failed"})
    assert len(names) >= 20
    assert [name for name in names if f"- `{_uri(name)}` (" not in described] == []
    assert [name for name in names if f"| `{name}` |" not in architecture] == []


async def test_answers_have_the_documented_status_for_their_type(
    test_keys: SignerKeys, signers: respx.MockRouter
):
    """Pin that the answers of a sample of refusals have the status the document gives."""
    settings = make_settings(test_keys)
    app = create_app(settings)
    spec = app.openapi()
    described = _documented_type(spec)
    json_body = {"Content-Type": "application/json"}
    async with running_gateway(settings, app=app) as client:
        answers = [
            await client.get("/nowhere"),
            await client.put("/v1/dcc"),
            await client.post("/v1/dcc", content=b"{}", headers={"Content-Type": "text/plain"}),
            await client.post("/v1/dcc", content=b"{", headers=json_body),
            await client.post("/v1/dcc", json={}, headers={"X-Request-Timeout": "-1"}),
            await client.post(
                "/v1/dcc", content=b" " * (settings.limits.max_body_bytes + 1), headers=json_body
            ),
            await client.post("/v1/domestic/issue", json=examples.DOMESTIC_ISSUE),
        ]
        app.state.drain.begin()
        answers.append(await client.get("/v1/keys"))
    documented = _documented_statuses(described)
    seen = {(r.json()["type"], r.status_code) for r in answers}
    assert len({status for _, status in seen}) == len(answers)
    assert {(t, status) for t, status in seen if status not in documented.get(t, ())} == set()
