"""The Idemix checks and gmpy2 are loaded in the idemix scheme only, not in the default one.

Each case runs in a process of its own, as a served worker does (`create_served_app` from the
environment, then the app's start-up and shutdown): what the test process itself imported
does not count.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.support.gateway import make_test_keys
from tests.support.processes import run_python

TIMEOUT_S = 60
IDEMIX_TEST_KEY = Path(__file__).parents[1] / "verification" / "data" / "idemix_test_pk.xml"

#: Build and start the app as a served worker does; print the Idemix modules then loaded.
START_UP = """\
import asyncio, json, sys
from signing_gateway.app import create_served_app

async def start_up(app):
    async with app.router.lifespan_context(app):
        pass

asyncio.run(start_up(create_served_app()))
print(json.dumps(sorted(
    name for name in sys.modules
    if name == "gmpy2" or (name.startswith("signing_gateway.") and "idemix" in name)
)))
"""


def _loaded_after_start_up(tmp_path: Path, **settings: str) -> list[str]:
    """The Idemix modules (and gmpy2) a gateway process holds once started with `settings`."""
    keys = make_test_keys(tmp_path)
    files = {"EU_CERTIFICATES": keys.files, "DOMESTIC_KEYS": keys.domestic_files}
    trust = {
        f"TRUST__{name}": orjson.dumps([str(p) for p in paths]).decode()
        for name, paths in files.items()
    }
    done = run_python(
        START_UP,
        timeout=TIMEOUT_S,
        AUTH__MODE="disabled",
        READINESS_PROBE_INTERVAL_SECONDS="3600",
        **trust,
        **settings,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = orjson.loads(done.stdout.splitlines()[-1])
    return loaded


def test_the_simulation_scheme_loads_no_idemix_code(tmp_path: Path) -> None:
    """A gateway started in the default scheme has imported neither gmpy2 nor an Idemix module."""
    assert _loaded_after_start_up(tmp_path) == []


def test_the_idemix_scheme_loads_the_checks_and_gmpy2(tmp_path: Path) -> None:
    """Started in the idemix scheme, the gateway holds the checks, their pool and gmpy2."""
    loaded = _loaded_after_start_up(
        tmp_path,
        DOMESTIC_SCHEME="idemix",
        IDEMIX__KEYS=orjson.dumps({"VWS-TEST-0": str(IDEMIX_TEST_KEY)}).decode(),
    )
    assert {
        "gmpy2",
        "signing_gateway.runtime.idemix_pool",
        "signing_gateway.verification.idemix",
        "signing_gateway.verification.idemix_answers",
        "signing_gateway.verification.idemix_commitment",
        "signing_gateway.verification.idemix_issuance",
        "signing_gateway.verification.idemix_keys",
    } <= set(loaded)
