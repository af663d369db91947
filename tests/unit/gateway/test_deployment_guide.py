"""The deployment settings docs/operations.md gives: valid where pasted, longer than the drain.

The guide's Kubernetes snippet is an excerpt of docs/deploy/kubernetes/deployment.yaml's pod
spec: both are checked, and the excerpt must say what the manifest says.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from signing_gateway.observability.tracing import EXIT_FLUSH_SECONDS
from signing_gateway.security.settings import AuditSettings
from signing_gateway.settings import ShutdownSettings
from tests.support.kubernetes_manifests import OPERATIONS, guide_pod_spec, manifests, pod_spec


def _drain_seconds() -> float:
    """The longest the default drain takes: waiting, then answering what it cancelled."""
    shutdown = ShutdownSettings()
    return shutdown.drain_timeout_seconds + shutdown.cancel_grace_seconds


def _shutdown_with_audit_seconds() -> float:
    """The longest the default shutdown takes with an audit file: the drain, then its records."""
    return _drain_seconds() + AuditSettings().write_timeout_seconds


def _manifest_pod_spec() -> Any:
    """The pod spec of the Deployment in docs/deploy/kubernetes."""
    return pod_spec(manifests())


#: The pod specs the guide recommends: its snippet, and the manifest it is an excerpt of.
POD_SPECS = pytest.mark.parametrize("pod_spec_of", [guide_pod_spec, _manifest_pod_spec])


@POD_SPECS
def test_kubernetes_snippet_probes_the_probe_port(pod_spec_of: Any) -> None:
    """The pod sets its grace period and service links; its one container probes port 8081.

    That each field is one the Kubernetes API defines, at its level, is for
    test_kubernetes_schemas.py to check.
    """
    pod = pod_spec_of()
    assert {"terminationGracePeriodSeconds", "enableServiceLinks"} <= pod.keys()
    [container] = pod["containers"]
    probes = {"startupProbe", "livenessProbe", "readinessProbe"}
    assert probes <= container.keys()
    assert {container[probe]["httpGet"]["port"] for probe in probes} == {8081}


def _pre_stop_seconds(pod: Any) -> float:
    """How long the gateway container's preStop sleeps before Kubernetes sends SIGTERM (or 0)."""
    [container] = pod["containers"]
    sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
    seconds: float = sleep.get("seconds", 0)
    return seconds


@POD_SPECS
def test_kubernetes_grace_period_outlasts_the_drain(pod_spec_of: Any) -> None:
    """The grace period outlasts the preStop, the default drain, the audit records and the spans.

    Kubernetes counts it from the start of the preStop: the sleep comes out of it.
    """
    pod = pod_spec_of()
    stop = _pre_stop_seconds(pod) + _shutdown_with_audit_seconds() + EXIT_FLUSH_SECONDS
    assert pod["terminationGracePeriodSeconds"] > stop


@POD_SPECS
def test_kubernetes_serves_on_while_the_endpoints_drop_the_pod(pod_spec_of: Any) -> None:
    """The container sleeps in its preStop before SIGTERM, so no rollout answers 503 at once.

    Endpoints and ingress drop a stopping pod only after a few seconds; the kubelet's `sleep`
    action needs no program in the image.
    """
    assert _pre_stop_seconds(pod_spec_of()) >= 5


def _named_items(value: Any) -> bool:
    """Whether `value` is a list of named items (containers, ports), matched by name."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and "name" in item for item in value)
    )


def _excerpt_differences(excerpt: Any, whole: Any, where: str = "") -> list[str]:
    """Where `excerpt` says other than `whole`: each of its fields must be there, equal.

    A list of named items (containers, ports) is matched by name; another list as a whole.
    """
    if isinstance(excerpt, dict) and isinstance(whole, dict):
        return [
            line
            for key, value in excerpt.items()
            for line in (
                _excerpt_differences(value, whole[key], f"{where}.{key}")
                if key in whole
                else [f"{where}.{key}: not in the manifest"]
            )
        ]
    if _named_items(excerpt) and _named_items(whole):
        named = {item["name"]: item for item in whole}
        return [
            line
            for item in excerpt
            for line in (
                _excerpt_differences(item, named[item["name"]], f"{where}[{item['name']}]")
                if item["name"] in named
                else [f"{where}[{item['name']}]: not in the manifest"]
            )
        ]
    return (
        []
        if excerpt == whole
        else [f"{where}: {excerpt!r} in the guide, {whole!r} in the manifest"]
    )


def test_the_guides_snippet_is_the_manifests_pod_spec() -> None:
    """Every field of the guide's snippet is the manifest's, with the same value.

    The manifest adds the image, environment, resources and volumes the snippet leaves to the
    reader; a probe or a grace period changed in one place only fails here.
    """
    assert _excerpt_differences(guide_pod_spec(), _manifest_pod_spec()) == []


@pytest.mark.parametrize(
    "pattern", [r"docker run --stop-timeout (\d+)", r"stop_grace_period: (\d+)s"]
)
def test_docker_stop_timeouts_outlast_the_drain(pattern: str) -> None:
    """The guide gives Docker and Compose a stop timeout longer than the default drain.

    Docker's own default, 10 s, would SIGKILL the gateway in the middle of its drain.
    """
    seconds = [int(found) for found in re.findall(pattern, OPERATIONS.read_text("utf-8"))]
    assert seconds
    assert min(seconds) > _shutdown_with_audit_seconds()


def _prose(path: Path) -> str:
    """A document's text, each run of spaces and line breaks as one space."""
    return re.sub(r"\s+", " ", path.read_text("utf-8"))


def test_the_guides_give_the_drains_own_defaults() -> None:
    """The drain's figures in the operations guide, resilience.md and the README are the code's."""
    shutdown = ShutdownSettings()
    drain, grace = shutdown.drain_timeout_seconds, shutdown.cancel_grace_seconds
    operations = _prose(OPERATIONS)
    assert f"`shutdown.drain_timeout_seconds` ({drain:g} s by default)" in operations
    assert f"`shutdown.cancel_grace_seconds` ({grace:g} s)" in operations
    assert f"up to {_drain_seconds():g} s" in operations
    readme = _prose(OPERATIONS.parent.parent / "README.md")
    assert f"up to {_drain_seconds():g} s by default" in readme
    # The audit file's queued records get `write_timeout_seconds` after the drain.
    with_audit = f"{_shutdown_with_audit_seconds():g} s with an audit file"
    assert with_audit in operations
    assert with_audit in readme
    resilience = _prose(OPERATIONS.parent / "resilience.md")
    assert f"`shutdown.drain_timeout_seconds` (default {drain:g} s)" in resilience
    assert (
        f"`shutdown.drain_timeout_seconds` ({drain:g}), `shutdown.cancel_grace_seconds` ({grace:g})"
        in resilience
    )


#: The programs the container image holds that a guide may run in it: the base image's Python
#: and shell, and the console scripts of the virtualenv. python:3.11-slim is Debian's minimal
#: base, without procps: no `kill` or `ps` program (the shell's built-in `kill` stands in).
IMAGE_PROGRAMS = frozenset({"python", "sh", "signing-gateway", "fake-signer"})
_IN_CONTAINER = re.compile(r"(?:kubectl exec \S+ --|docker exec \S+) (\S+)")


def test_commands_run_in_the_container_use_programs_the_image_holds() -> None:
    """Pin that `kubectl exec`/`docker exec` in the guides runs something the image has.

    The operations guide told operators to `kubectl exec <pod> -- kill -USR1 1` for a stack
    dump, which fails in the image ("executable file not found") exactly when it is needed.
    """
    guides = [OPERATIONS.parent.parent / "README.md", *sorted(OPERATIONS.parent.glob("*.md"))]
    programs = {found for guide in guides for found in _IN_CONTAINER.findall(_prose(guide))}
    assert programs  # the scan reads what it should
    assert programs - IMAGE_PROGRAMS == set()


def test_the_log_queries_read_on_past_a_line_that_is_not_json() -> None:
    """Every `jq` query the guide runs on the gateway's log reads its lines raw, skipping others.

    `kill -USR1`, which the runbook advises twice for a held loop, writes its stack dump as
    plain text into the same stderr as the JSON log. A plain `jq 'select(...)'` stops there
    with a parse error and shows no record logged after the dump: after taking the dumps, the
    runbook's next query would come back empty. `jq -R 'fromjson? | ...'` skips such lines.
    """
    text = " ".join(OPERATIONS.read_text("utf-8").split())
    queries = re.findall(r"`(jq [^`]*)`", text)
    # The audit trail is a file of JSON lines the gateway alone writes: read as it is.
    on_the_log = [query for query in queries if not query.endswith(".jsonl")]
    assert len(on_the_log) >= 2, queries
    for query in on_the_log:
        assert query.startswith("jq -R 'fromjson? | "), query
