"""The Kubernetes manifests and the guide's pod spec are objects the Kubernetes API accepts.

kubernetes-validate holds JSON schemas made from each Kubernetes release's OpenAPI document.
Strict, they refuse a field the API does not define (a misspelt `runAsNonroot`, a probe beside
the containers instead of in one), which the API server rejects or `kubectl apply` drops with a
warning, and a value of the wrong type (a port given as a string). The PodMonitor is the
Prometheus operator's resource, not in those schemas: it is held to the part of the operator's
own schema its fields use.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.kubernetes_manifests import (
    MANIFESTS,
    Manifest,
    at,
    guide_pod_spec,
    set_field,
)

#: The oldest of the three minor releases the Kubernetes project maintains (1.35 to 1.37 when
#: this was written): a field the manifests use is one every maintained cluster knows.
KUBERNETES_VERSION = "1.35"

#: The fields of a PodMonitor the manifest sets, with their types, as the prometheus-operator's
#: CRD defines them (example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml,
#: operator v0.91.0). Each level refuses other fields: one the manifest adds is added here from
#: that file, at its level. `metadata` is the API server's ObjectMeta, of which it sets two.
_DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
POD_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "labels": _LABELS},
        },
        "spec": {
            "type": "object",
            "required": ["selector"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": _LABELS},
                },
                "podMetricsEndpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": _DURATION},
                        },
                    },
                },
            },
        },
    },
}


def schema_error(document: Manifest) -> str | None:
    """Where and why the schema of `document`'s kind refuses it (the first error); None if not."""
    try:
        if document["kind"] == "PodMonitor":
            jsonschema.Draft202012Validator(POD_MONITOR_SCHEMA).validate(document)
        else:
            validated = kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
            # An unbundled release is validated against an older one: say so, not pass.
            assert validated == KUBERNETES_VERSION, f"validated against {validated}"
    except jsonschema.ValidationError as error:
        return f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
    return None


def _documents() -> list[Any]:
    """Every document of every YAML file of docs/deploy/kubernetes, named by file and index."""
    return [
        pytest.param(document, id=f"{path.name}[{index}]")
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for index, document in enumerate(yaml.safe_load_all(path.read_text("utf-8")))
    ]


def _deployment_of(pod: Manifest) -> Manifest:
    """The least Deployment that runs `pod` (a pod spec)."""
    labels = {"app.kubernetes.io/name": "signing-gateway"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "signing-gateway"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _manifest(name: str) -> Manifest:
    """The one document of docs/deploy/kubernetes/`name`."""
    document: Manifest = yaml.safe_load((MANIFESTS / name).read_text("utf-8"))
    return document


@pytest.mark.parametrize("document", _documents())
def test_each_manifest_is_one_the_api_accepts(document: Any) -> None:
    """Every document of the manifests validates, strictly, against its kind's schema."""
    assert isinstance(document, dict)
    assert schema_error(document) is None


def test_the_guides_pod_spec_is_one_the_api_accepts() -> None:
    """The pod spec docs/operations.md recommends validates as a Deployment's pod template."""
    assert schema_error(_deployment_of(guide_pod_spec())) is None


def _renamed(path: tuple[Any, ...], old: str, new: str) -> Callable[[Manifest], None]:
    """A change that renames the field `old` at `path` to `new`, keeping its value."""

    def change(document: Manifest) -> None:
        node = at(document, path)
        node[new] = node.pop(old)

    return change


def _moved(source: tuple[Any, ...], target: tuple[Any, ...]) -> Callable[[Manifest], None]:
    """A change that moves the field at `source` to `target` (both from the document)."""

    def change(document: Manifest) -> None:
        value = at(document, source[:-1]).pop(source[-1])
        at(document, target[:-1])[target[-1]] = value

    return change


_POD = ("spec", "template", "spec")
_CONTAINER = (*_POD, "containers", 0)
_ENDPOINT = ("spec", "podMetricsEndpoints", 0)
#: Broken manifests: the file, the change, and the error the schema gives.
BROKEN: dict[str, tuple[str, Callable[[Manifest], None], str]] = {
    "a misspelt field": (
        "deployment.yaml",
        _renamed((*_POD, "securityContext"), "runAsNonRoot", "runAsNonroot"),
        (
            "spec.template.spec.securityContext: "
            "Additional properties are not allowed ('runAsNonroot' was unexpected)"
        ),
    ),
    "a container field in the pod's security context": (
        "deployment.yaml",
        _moved(
            (*_CONTAINER, "securityContext", "readOnlyRootFilesystem"),
            (*_POD, "securityContext", "readOnlyRootFilesystem"),
        ),
        (
            "spec.template.spec.securityContext: "
            "Additional properties are not allowed ('readOnlyRootFilesystem' was unexpected)"
        ),
    ),
    "a probe in the pod, not its container": (
        "deployment.yaml",
        _moved((*_CONTAINER, "readinessProbe"), (*_POD, "readinessProbe")),
        (
            "spec.template.spec: "
            "Additional properties are not allowed ('readinessProbe' was unexpected)"
        ),
    ),
    "a probe's period under its httpGet": (
        "deployment.yaml",
        _moved(
            (*_CONTAINER, "livenessProbe", "periodSeconds"),
            (*_CONTAINER, "livenessProbe", "httpGet", "periodSeconds"),
        ),
        (
            "spec.template.spec.containers.0.livenessProbe.httpGet: "
            "Additional properties are not allowed ('periodSeconds' was unexpected)"
        ),
    ),
    "a container port as a string": (
        "deployment.yaml",
        set_field((*_CONTAINER, "ports", 0, "containerPort"), "8080"),
        "spec.template.spec.containers.0.ports.0.containerPort: '8080' is not of type 'integer'",
    ),
    "a preStop sleep's seconds as a string": (
        "deployment.yaml",
        set_field((*_CONTAINER, "lifecycle", "preStop", "sleep", "seconds"), "5"),
        (
            "spec.template.spec.containers.0.lifecycle.preStop.sleep.seconds: "
            "'5' is not of type 'integer'"
        ),
    ),
    "the Service's port under a container's key": (
        "service.yaml",
        _renamed(("spec", "ports", 0), "port", "containerPort"),
        "spec.ports.0: 'port' is a required property",
    ),
    "a Service port as a string": (
        "service.yaml",
        set_field(("spec", "ports", 0, "port"), "8080"),
        "spec.ports.0.port: '8080' is not of type 'integer'",
    ),
    "a misspelt selector in the budget": (
        "poddisruptionbudget.yaml",
        _renamed(("spec", "selector"), "matchLabels", "matchLabel"),
        "spec.selector: Additional properties are not allowed ('matchLabel' was unexpected)",
    ),
    "a scrape endpoint's field in the PodMonitor's spec": (
        "podmonitor.yaml",
        _moved((*_ENDPOINT, "path"), ("spec", "path")),
        "spec: Additional properties are not allowed ('path' was unexpected)",
    ),
    "a scrape interval without its unit": (
        "podmonitor.yaml",
        set_field((*_ENDPOINT, "interval"), "15"),
        f"spec.podMetricsEndpoints.0.interval: '15' does not match {_DURATION!r}",
    ),
}


@pytest.mark.parametrize("broken", BROKEN)
def test_the_schemas_refuse_a_broken_manifest(broken: str) -> None:
    """A misspelt field, one at the wrong level or a value of the wrong type is refused."""
    name, change, error = BROKEN[broken]
    document = _manifest(name)
    assert schema_error(document) is None  # as the repository holds it
    changed = copy.deepcopy(document)
    change(changed)
    assert schema_error(changed) == error
