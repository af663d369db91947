"""The memory-sites report: per-request bytes grouped by package, gateway beside the proxy."""

from __future__ import annotations

from typing import Any

from bench import memory_sites


def _result(kind: str, by_file: dict[str, float]) -> dict[str, Any]:
    line = {"site": "json/decoder.py:353", "code": "a | b", "bytes": 2455.0, "objects": 41.0}
    return {"kind": kind, "held": 1500, "by_file": by_file, "by_line": [line]}


def test_packages_group_files_and_the_gateway_by_subpackage() -> None:
    """A site-package or stdlib module is one row; the gateway splits by subpackage."""
    assert memory_sites._component("fastapi/routing.py") == "fastapi"
    assert memory_sites._component("contextlib.py") == "contextlib"
    assert memory_sites._component("signing_gateway/signers/http.py") == "signing_gateway/signers"
    assert memory_sites._component("signing_gateway/app.py") == "signing_gateway"


def test_report_sums_each_package_and_shows_the_difference() -> None:
    """Rows past `top` fold into one; the totals and a code cell with a pipe stay intact."""
    results = {
        "gateway": _result(
            "gateway",
            {"fastapi/routing.py": 5000.0, "fastapi/dependencies/utils.py": 1000.0,
             "httpx/_models.py": 3000.0},
        ),
        "passthrough-proxy": _result(
            "passthrough-proxy", {"fastapi/routing.py": 4000.0, "bench/passthrough.py": 6000.0}
        ),
    }  # fmt: skip
    rows = list(memory_sites._rows(results, top=2))
    assert "gateway 8.8 KB, proxy 9.8 KB" in rows[0]
    assert "| `fastapi` | 6,000 | 4,000 | +2,000 |" in rows
    assert "| `bench` | 0 | 6,000 | -6,000 |" in rows
    assert "| 1 others | 3,000 | 0 | +3,000 |" in rows  # httpx, past the top 2
    assert "| **total** | 9,000 | 10,000 | -1,000 |" in rows
    assert "| `json/decoder.py:353` | 2,455 | 41.0 | `a \\| b` |" in rows
