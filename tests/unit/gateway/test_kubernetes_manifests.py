"""The Kubernetes manifests of docs/deploy/kubernetes hold to the settings, the image and the guide.

No cluster is at hand (no `kubectl`): these read the YAML as the API server would take it and
check what the gateway needs of it. tests/contract/gateway/test_gateway_kubernetes_manifest.py
starts the gateway with the Deployment's environment and files.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from pathlib import PurePosixPath

import pytest

from signing_gateway.settings_env import FLAG_VARIABLES, read_settings, unknown_variables
from tests.support.alert_rules import guide_section
from tests.support.kubernetes_manifests import (
    MANIFESTS,
    OPERATIONS,
    Manifest,
    container_env,
    container_ports,
    gateway_container,
    image_environment,
    image_instruction,
    manifests,
    mounted_volumes,
    named_files,
    pod_spec,
    projected_files,
    set_field,
)

Objects = dict[str, Manifest]


@pytest.fixture
def objects() -> Objects:
    """The manifests as the repository holds them."""
    return manifests()


def test_the_manifests_define_what_a_deployment_needs(objects: Objects) -> None:
    """A Deployment, its Service, a disruption budget and the scrape, each selecting the pods."""
    assert set(objects) == {"Deployment", "Service", "PodDisruptionBudget", "PodMonitor"}
    deployment = objects["Deployment"]["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    selectors = [
        deployment["selector"]["matchLabels"],
        objects["Service"]["spec"]["selector"],
        objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        objects["PodMonitor"]["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= labels.items()
    assert deployment["replicas"] > objects["PodDisruptionBudget"]["spec"]["maxUnavailable"]


def test_every_variable_is_a_setting_and_the_settings_validate(objects: Objects) -> None:
    """Each `SIGNING_GATEWAY_*` name is a setting, and with the image's they read as `serve` reads.

    The image's port and host variables stand in for `serve`'s flags: the manifest leaves them
    to the image. Files are checked by the contract test, which makes them.
    """
    env = container_env(objects)
    assert all(name.startswith("SIGNING_GATEWAY_") for name in env)
    assert unknown_variables(env, also_read=()) == []
    with pytest.MonkeyPatch.context() as environ:
        for name in [name for name in os.environ if name.upper().startswith("SIGNING_GATEWAY_")]:
            environ.delenv(name)
        for name, value in {**image_environment(), **env}.items():
            environ.setenv(name, value)
        settings, problems = read_settings(FLAG_VARIABLES)
    assert problems == []
    assert settings is not None
    assert settings.environment == "production"


def test_ports_and_user_are_the_images(objects: Objects) -> None:
    """The container's ports are those the image serves and exposes; the pod runs as its user."""
    image = image_environment()
    ports = container_ports(objects)
    assert ports == {
        "api": int(image["SIGNING_GATEWAY_PORT"]),
        "probes": int(image["SIGNING_GATEWAY_PROBE_PORT"]),
    }
    assert {int(port) for port in image_instruction("EXPOSE").split()} == set(ports.values())
    user, group = (int(part) for part in image_instruction("USER").split(":"))
    security = pod_spec(objects)["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (user, group)


def test_the_pod_runs_locked_down(objects: Objects) -> None:
    """Not root, no privilege escalation, no capabilities, the runtime's seccomp profile."""
    pod = pod_spec(objects)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    container = gateway_container(objects)["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}


def _service_target_ports(objects: Objects) -> set[int]:
    """The container ports the Service sends its clients to (by number or port name)."""
    ports = container_ports(objects)
    return {
        ports[port["targetPort"]] if isinstance(port["targetPort"], str) else port["targetPort"]
        for port in objects["Service"]["spec"]["ports"]
    }


def test_the_service_exposes_the_api_only(objects: Objects) -> None:
    """Clients reach 8080 through the Service, never the probe port (probes and metrics)."""
    ports = container_ports(objects)
    assert _service_target_ports(objects) == {ports["api"]}
    probes = {
        gateway_container(objects)[probe]["httpGet"]["port"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {ports["probes"]}


def test_prometheus_scrapes_the_probe_port(objects: Objects) -> None:
    """The PodMonitor scrapes /metrics on the port the Service leaves out."""
    [endpoint] = objects["PodMonitor"]["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert container_ports(objects)[endpoint["port"]] not in _service_target_ports(objects)


def test_cpu_and_memory_requests_are_the_limits(objects: Objects) -> None:
    """Request = limit: the event loop never runs on a throttled cgroup (operations.md, Sizing)."""
    resources = gateway_container(objects)["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"]


def _mount_of(path: PurePosixPath, objects: Objects) -> Manifest | None:
    """The volume mounted over `path`, the innermost one; None when it is in the image's files."""
    holding = [mount for mount in mounted_volumes(objects) if path.is_relative_to(mount)]
    return mounted_volumes(objects)[max(holding, key=lambda m: len(m.parts))] if holding else None


def test_every_file_a_setting_names_is_mounted(objects: Objects) -> None:
    """A file to read is an item of a read-only ConfigMap or Secret; the audit file is writable.

    The root file system is read-only, so a file left to the image would not be there.
    """
    named = named_files(container_env(objects))
    assert named  # the scan reads what it should
    for name, paths in named.items():
        for path in paths:
            volume = _mount_of(path, objects)
            assert volume is not None, f"{name}: {path} is on no volume"
            if name == "SIGNING_GATEWAY_AUDIT__FILE":
                assert not volume["mount"].get("readOnly", False), name
                assert projected_files(volume) is None, name
                continue
            assert volume["mount"]["readOnly"] is True, name
            files = projected_files(volume)
            assert files is not None, f"{name}: {path} is not from a ConfigMap or Secret"
            assert path.relative_to(volume["mount"]["mountPath"]) in files, f"{name}: {path}"


def test_every_mounted_file_is_named_by_a_setting(objects: Objects) -> None:
    """Each file of a mounted ConfigMap or Secret is one the gateway reads: none is left unused."""
    named = {path for paths in named_files(container_env(objects)).values() for path in paths}
    for mount_path, volume in mounted_volumes(objects).items():
        files = projected_files(volume)
        if files is None:
            continue
        assert files, f"{volume['name']}: list the items, so the files are known"
        for file in files:
            assert mount_path / file in named, f"{volume['name']}: {file} is read by no setting"


def _deployment_comments() -> str:
    """The comment lines of the Deployment's file, without their `#`, joined by spaces."""
    lines = (MANIFESTS / "deployment.yaml").read_text("utf-8").splitlines()
    return " ".join(line.strip().lstrip("#") for line in lines if line.strip().startswith("#"))


@pytest.mark.parametrize(
    "text_of",
    [_deployment_comments, lambda: guide_section("### Kubernetes manifests\n", "\n#")],
    ids=["deployment comment", "operations guide"],
)
def test_the_idemix_scheme_is_said_with_settings_that_exist(text_of: Callable[[], str]) -> None:
    """The manifest's simulation scheme refuses a real Idemix signer: both texts say what to set.

    Each variable they name is a setting, and the guide's Idemix section holds the sizing.
    """
    text = " ".join(text_of().split())
    assert "SIGNING_GATEWAY_DOMESTIC_SCHEME=idemix" in text
    named = set(re.findall(r"SIGNING_GATEWAY_[A-Z_]+[A-Z]", text))
    assert {"SIGNING_GATEWAY_IDEMIX__KEYS", "SIGNING_GATEWAY_IDEMIX__CHECK_WORKERS"} <= named
    assert unknown_variables(dict.fromkeys(named, ""), also_read=FLAG_VARIABLES) == []
    assert "Idemix domestic signer" in text
    assert "Idemix domestic signer: `SIGNING_GATEWAY_DOMESTIC_SCHEME=idemix`" in (
        OPERATIONS.read_text("utf-8")
    )
    assert "SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS" in container_env(manifests())


def _set_env(env_name: str, value: str | None) -> Callable[[Objects], None]:
    """A change that sets `env_name` in the container's environment, or drops it (None)."""

    def change(objects: Objects) -> None:
        container = gateway_container(objects)
        container["env"] = [item for item in container["env"] if item["name"] != env_name]
        if value is not None:
            container["env"].append({"name": env_name, "value": value})

    return change


def _writable(volume: str) -> Callable[[Objects], None]:
    """A change that mounts `volume` writable."""

    def change(objects: Objects) -> None:
        for mount in gateway_container(objects)["volumeMounts"]:
            if mount["name"] == volume:
                mount["readOnly"] = False

    return change


_POD = ("Deployment", "spec", "template", "spec")
_CONTAINER = (*_POD, "containers", 0)
BROKEN: dict[str, tuple[Callable[[Objects], None], Callable[[Objects], None]]] = {
    "a misspelled setting": (
        _set_env("SIGNING_GATEWAY_AUDIT__FAIL_CLOSE", "true"),
        test_every_variable_is_a_setting_and_the_settings_validate,
    ),
    "production without its signer": (
        _set_env("SIGNING_GATEWAY_EU_SIGNER__URL", None),
        test_every_variable_is_a_setting_and_the_settings_validate,
    ),
    "the probe port in the Service": (
        set_field(
            ("Service", "spec", "ports"), [{"name": "probes", "port": 8081, "targetPort": 8081}]
        ),
        test_the_service_exposes_the_api_only,
    ),
    "scraping the API port": (
        set_field(("PodMonitor", "spec", "podMetricsEndpoints", 0, "port"), "api"),
        test_prometheus_scrapes_the_probe_port,
    ),
    "another user": (
        set_field((*_POD, "securityContext", "runAsUser"), 1000),
        test_ports_and_user_are_the_images,
    ),
    "another API port": (
        set_field((*_CONTAINER, "ports", 0, "containerPort"), 8000),
        test_ports_and_user_are_the_images,
    ),
    "a CPU limit above the request": (
        set_field((*_CONTAINER, "resources", "limits", "cpu"), "2"),
        test_cpu_and_memory_requests_are_the_limits,
    ),
    "a trust file outside its ConfigMap": (
        _set_env("SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS", '["/etc/signing-gateway/domestic.pem"]'),
        test_every_file_a_setting_names_is_mounted,
    ),
    "a writable Secret": (
        _writable("signer-tls"),
        test_every_file_a_setting_names_is_mounted,
    ),
    "a mounted file no setting reads": (
        _set_env("SIGNING_GATEWAY_AUTH__JWKS_FILE", None),
        test_every_mounted_file_is_named_by_a_setting,
    ),
    "root allowed": (
        set_field((*_POD, "securityContext", "runAsNonRoot"), False),
        test_the_pod_runs_locked_down,
    ),
    "a budget that lets every pod go": (
        set_field(("PodDisruptionBudget", "spec", "maxUnavailable"), 3),
        test_the_manifests_define_what_a_deployment_needs,
    ),
}


@pytest.mark.parametrize("broken", BROKEN)
def test_each_check_refuses_a_broken_manifest(objects: Objects, broken: str) -> None:
    """The checks above fail on a manifest broken in the way each guards against."""
    change, check = BROKEN[broken]
    check(copy.deepcopy(objects))  # passes as the repository holds it
    changed = copy.deepcopy(objects)
    change(changed)
    with pytest.raises(AssertionError):
        check(changed)
