"""What the costliest bodies cost before a signer call: `python -m bench.body_cost [--against DIR]`.

For each public POST route, its ordinary body and the costliest ones within the limits
(`bench.costly_bodies`), each taken `--repeats` times by an in-process gateway: the test
keys, signers mocked with respx, caller authentication off. What is timed, in ms, is the
path from the body handed to the app to the first signing call at a signer (or to the
answer's start, for `prepare-issue`, which signs nothing): the body limits, pydantic's
validation, the route's own checks, the session. One request at a time, one core.

`--against DIR` (another checkout, e.g. `git worktree add --detach /tmp/old main`) takes the
same bodies with that code as well: child processes, this checkout's and the other's by
turns, `--rounds` each; the table gives each side's median of its rounds' medians.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.costly_bodies import Case, cases


class _Clock:
    """When the body was handed over, and when the first signing call or answer came."""

    def __init__(self) -> None:
        self.received = 0.0
        self.reached = 0.0

    def reach(self) -> None:
        """Note the first signing call (or answer) of the request; later ones change nothing."""
        if not self.reached:
            self.reached = time.perf_counter()


async def _timed_post(app: Any, state: Any, case: Case, body: bytes, clock: _Clock) -> int:
    """POST `body` to the case's path straight into the ASGI app; the answer's status."""
    headers = [
        (b"host", b"gateway.test"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": case.path,
        "raw_path": case.path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("gateway.test", 80),
        "state": dict(state or {}),
    }
    status = 0
    answered = asyncio.Event()
    unread = [body]

    async def receive() -> dict[str, Any]:
        if unread:
            clock.received = time.perf_counter()
            return {"type": "http.request", "body": unread.pop(), "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            clock.reach()
            status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    await app(scope, receive, send)
    return status


def _timed(handler: Callable[[Any], Any], clocks: list[_Clock]) -> Callable[[Any], Any]:
    """A respx side effect: `handler`'s answer, the latest request's clock stopped first."""

    def answer(request: Any) -> Any:
        clocks[-1].reach()
        return handler(request)

    return answer


async def _measure(repeats: int, names: list[str]) -> dict[str, list[float]]:
    """Each case's times (ms), `repeats` of them after one to warm up."""
    import httpx  # noqa: PLC0415 - dev dependencies, only when measuring
    import respx  # noqa: PLC0415

    # From the checkout measured (`--child`): the gateway and its test support.
    create_app = importlib.import_module("signing_gateway.app").create_app
    mocks = importlib.import_module("tests.api.signer_mocks")
    support = importlib.import_module("tests.support.gateway")
    eu_url, domestic_url = support.EU_SIGNER_URL, support.DOMESTIC_SIGNER_URL
    results: dict[str, list[float]] = {}
    clocks = [_Clock()]
    with (
        tempfile.TemporaryDirectory() as directory,
        respx.mock(using="httpx", assert_all_called=False) as router,
    ):
        keys = support.make_test_keys(Path(directory))
        app = create_app(support.make_settings(keys))
        router.route(host="gateway.test").pass_through()
        for url in (eu_url, domestic_url):
            router.get(f"{url}/healthz").respond(200, json={"status": "ok"})
        router.post(f"{domestic_url}/prepare_issue").mock(side_effect=mocks.prepare_issuing(keys))
        for url, handler in (
            (f"{eu_url}/get_credential", mocks.eu_signing(keys)),
            (f"{domestic_url}/issue", mocks.domestic_issuing(keys)),
            (f"{domestic_url}/issue_static", mocks.domestic_static(keys)),
        ):
            router.post(url).mock(side_effect=_timed(handler, clocks))
        # Not `tests.support.gateway.running_gateway`: the timed requests go to the app
        # straight, with the lifespan's state, which that helper keeps to itself.
        async with app.router.lifespan_context(app) as state:

            async def with_state(scope: Any, receive: Any, send: Any) -> None:
                scope["state"] = dict(state or {})
                await app(scope, receive, send)

            transport = httpx.ASGITransport(app=with_state)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway.test"
            ) as client:
                for case in cases():
                    if names and not any(name in case.name for name in names):
                        continue
                    times: list[float] = []
                    for _ in range(repeats + 1):
                        stoken = None
                        if case.session:
                            opened = await client.post("/v1/domestic/prepare-issue")
                            stoken = opened.json()["stoken"]
                        clocks.append(clock := _Clock())
                        status = await _timed_post(app, state, case, case.build(stoken), clock)
                        if status != 200:  # signed, as every case is
                            raise SystemExit(f"{case.name}: answered {status}")
                        times.append((clock.reached - clock.received) * 1000)
                    results[case.name] = times[1:]
    return results


def _in_child(checkout: Path, repeats: int, names: list[str]) -> dict[str, list[float]]:
    """`_measure` in a child process, the gateway and its test support from `checkout`."""
    here = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "bench.body_cost", "--child", str(checkout)]
    command += ["--repeats", str(repeats)]
    for name in names:
        command += ["--case", name]
    done = subprocess.run(command, cwd=here, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"measuring {checkout} failed:\n{done.stderr}")
    results: dict[str, list[float]] = json.loads(done.stdout)
    return results


def main() -> None:
    """Measure, print a Markdown table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="requests per body and round")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per checkout")
    parser.add_argument("--against", type=Path, help="another checkout to measure as well")
    parser.add_argument("--case", action="append", default=[], help="only bodies named so")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        # Ahead of this checkout (and of an installed gateway): the code measured is its.
        sys.path.insert(0, str(args.child))
        json.dump(asyncio.run(_measure(args.repeats, args.case)), sys.stdout)
        return
    checkouts = {"this checkout": Path(__file__).resolve().parent.parent}
    if args.against:
        checkouts[str(args.against)] = args.against.resolve()
    medians: dict[str, dict[str, list[float]]] = {label: {} for label in checkouts}
    for _ in range(args.rounds):
        for label, checkout in checkouts.items():
            for name, times in _in_child(checkout, args.repeats, args.case).items():
                medians[label].setdefault(name, []).append(statistics.median(times))
    print("| body | " + " | ".join(f"{label} (ms)" for label in checkouts) + " |")
    print("|---|" + "---:|" * len(checkouts))
    for name in medians["this checkout"]:
        cells = [f"{statistics.median(medians[label][name]):.2f}" for label in checkouts]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
