"""The Kubernetes manifests of docs/deploy/kubernetes, the guide's pod spec and the image, as data.

Unit tests check the manifests against the settings, the image and the operations guide; the
contract test starts the gateway with the Deployment's environment and files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from signing_gateway.settings_doc import setting_docs
from tests.support.image_replay import DOCKERFILE, env_assignments, instructions

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "docs" / "deploy" / "kubernetes"
OPERATIONS = ROOT / "docs" / "operations.md"
#: The gateway's container in the Deployment's pod template.
CONTAINER = "signing-gateway"

Manifest = dict[str, Any]


def manifests(directory: Path = MANIFESTS) -> dict[str, Manifest]:
    """Every object the directory's YAML files define, by kind (each kind once)."""
    found: dict[str, Manifest] = {}
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text("utf-8")):
            assert document["kind"] not in found, f"{path.name}: a second {document['kind']}"
            found[document["kind"]] = document
    return found


def at(document: Manifest, path: tuple[Any, ...]) -> Any:
    """The node at `path` (keys and list indexes) in `document`."""
    node: Any = document
    for key in path:
        node = node[key]
    return node


def set_field(path: tuple[Any, ...], value: object) -> Callable[[Manifest], None]:
    """A change that sets the field at `path` (keys and list indexes) to `value`.

    Tests break a manifest with it (a document, or the objects by kind) to see a check refuse it.
    """

    def change(document: Manifest) -> None:
        at(document, path[:-1])[path[-1]] = value

    return change


def pod_spec(objects: dict[str, Manifest]) -> Manifest:
    """The Deployment's pod template spec."""
    spec: Manifest = objects["Deployment"]["spec"]["template"]["spec"]
    return spec


def guide_pod_spec() -> Any:
    """The pod spec docs/operations.md recommends (its Kubernetes YAML block), parsed."""
    text = OPERATIONS.read_text("utf-8")
    after = text.split("Recommended Kubernetes settings", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", after, re.DOTALL)
    assert block is not None
    return yaml.safe_load(block[1])


def gateway_container(objects: dict[str, Manifest]) -> Manifest:
    """The gateway's container of the Deployment."""
    [container] = [c for c in pod_spec(objects)["containers"] if c["name"] == CONTAINER]
    return container


def container_env(objects: dict[str, Manifest]) -> dict[str, str]:
    """The gateway container's environment, by name (plain values only: no `valueFrom`)."""
    return {item["name"]: item["value"] for item in gateway_container(objects)["env"]}


def container_ports(objects: dict[str, Manifest]) -> dict[str, int]:
    """The gateway container's ports, by name."""
    return {port["name"]: port["containerPort"] for port in gateway_container(objects)["ports"]}


def file_settings() -> frozenset[str]:
    """The variables of the settings that name files (a path, a list or a map of them)."""
    return frozenset(doc.env_var for doc in setting_docs() if "Path" in doc.type_name)


def named_files(env: dict[str, str]) -> dict[str, list[PurePosixPath]]:
    """The files each setting of `env` that names files names (JSON lists and maps read)."""
    named = {}
    for name in file_settings() & env.keys():
        value = env[name]
        given = json.loads(value) if value.lstrip().startswith(("[", "{")) else [value]
        paths = given.values() if isinstance(given, dict) else given
        named[name] = [PurePosixPath(path) for path in paths]
    return named


def mounted_volumes(objects: dict[str, Manifest]) -> dict[PurePosixPath, Manifest]:
    """The gateway container's volumes, by where they are mounted, each with its mount's fields."""
    volumes = {volume["name"]: volume for volume in pod_spec(objects).get("volumes", [])}
    return {
        PurePosixPath(mount["mountPath"]): {**volumes[mount["name"]], "mount": mount}
        for mount in gateway_container(objects).get("volumeMounts", [])
    }


def projected_files(volume: Manifest) -> list[PurePosixPath] | None:
    """The files a ConfigMap or Secret volume puts under its mount; None for other volumes."""
    source = volume.get("configMap") or volume.get("secret")
    if source is None:
        return None
    return [PurePosixPath(item["path"]) for item in source.get("items", [])]


def _runtime_stage() -> list[tuple[str, str]]:
    """The Dockerfile's instructions after its last `FROM`: the runtime stage.

    Read as the image's replay reads them (`tests.support.image_replay.instructions`).
    """
    found = instructions(DOCKERFILE.read_text("utf-8"))
    last_from = max(index for index, (keyword, _) in enumerate(found) if keyword == "FROM")
    return found[last_from + 1 :]


def image_environment() -> dict[str, str]:
    """The variables the Dockerfile's runtime stage sets with `ENV`."""
    return {
        name: value
        for keyword, arguments in _runtime_stage()
        if keyword == "ENV"
        for name, value in env_assignments(arguments)
    }


def image_instruction(instruction: str) -> str:
    """The arguments of the runtime stage's one `instruction` (`USER`, `EXPOSE`)."""
    [arguments] = [arguments for keyword, arguments in _runtime_stage() if keyword == instruction]
    return arguments
