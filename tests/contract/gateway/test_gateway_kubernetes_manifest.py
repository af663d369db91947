"""`serve` starts and signs with exactly the Kubernetes Deployment's settings and files.

The environment is the image's `ENV` under the Deployment's `env`, as the container gets it.
Only what the cluster would provide is stood in for: the placeholder signer URLs by the fake
signers on loopback, the ports by free ones on 127.0.0.1, and each mounted ConfigMap, Secret
and emptyDir by a directory under a temporary root holding the files the settings name: the
fake EU signer's DSCs, the fake domestic signer's public key, a JWKS of a local token issuer,
and a throwaway CA with the gateway's client certificate.

The fakes speak plain HTTP, so each is reached through a TLS front (tests/support/tls_front.py)
showing a server certificate of that CA and requiring a client certificate it issued: the
gateway's calls to the signers make the mutual TLS handshake with the Secret's files. Not
covered: a signer behind a name (the fronts are at 127.0.0.1), nor the fake's own /keys, which
the test reads over plain HTTP to write the trust files.

The same deployment runs once more from the image, replayed without Docker
(`tests.support.image_replay`): its entry point, as its user on a read-only root, on files
with the modes the kubelet gives them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import httpx
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.bodies import eu_vaccination
from tests.contract.gateway.gateway_process import (
    free_port,
    running_gateway_process,
    wait_ready,
)
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.image_replay import (
    ROOT,
    Image,
    can_run_containers,
    interpreter_for,
    replay,
)
from tests.support.kubernetes_manifests import (
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
)
from tests.support.tls_front import TlsFront, tls_front
from tests.support.tls_pki import issue_certificate, write_pem

#: The CA that issues the signers' server certificates and the gateway's client certificate.
_CA_NAME = "Signer CA"

#: The signer URL settings, and which fake stands in for each.
SIGNER_URLS = {
    "SIGNING_GATEWAY_EU_SIGNER__URL": "eu",
    "SIGNING_GATEWAY_DOMESTIC_SIGNER__URL": "domestic",
}


_CaKey = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    """The image replayed (`tests.support.image_replay`) under a folder its user can walk into.

    Running it as a container takes root and a mount namespace, and a Python 3.11 the image's
    user can run; without them it is skipped, unless `TEST_REQUIRE_IMAGE_REPLAY=1` (CI as
    root) makes it fail.
    """
    uid, _, gid = image_instruction("USER").partition(":")
    why = can_run_containers()
    python = interpreter_for(int(uid), int(gid)) if why is None else None
    if python is None:
        why = why or "no Python 3.11 the image's user can run"
        if os.environ.get("TEST_REQUIRE_IMAGE_REPLAY") == "1":
            pytest.fail(f"the image cannot be replayed here: {why}")
        pytest.skip(f"the image's replay runs as a container: {why}")
    directory = Path(tempfile.mkdtemp(prefix="image-"))
    try:
        directory.chmod(0o755)
        yield replay(directory / "root", python)
    finally:
        shutil.rmtree(directory)


@contextlib.contextmanager
def _tls_fronts(
    ca: _CaKey, fakes: dict[str, FakeSignerProcess], directory: Path
) -> Iterator[dict[str, TlsFront]]:
    """A TLS front for each fake, by role: a server certificate of `ca`; a client one it issued."""
    server, server_key = issue_certificate("signer", (_CA_NAME, ca[1]), server=True)
    write_pem(directory / "ca.pem", ca[0])
    write_pem(directory / "server.pem", server, server_key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=directory / "ca.pem")
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    with contextlib.ExitStack() as stack:
        yield {
            role: stack.enter_context(tls_front(fake.port, context)) for role, fake in fakes.items()
        }


def _pem(value: x509.Certificate | ed25519.Ed25519PublicKey) -> bytes:
    if isinstance(value, x509.Certificate):
        return value.public_bytes(serialization.Encoding.PEM)
    return value.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _file_contents(
    eu: FakeSignerProcess, domestic: FakeSignerProcess, issuer: LocalTokenIssuer, ca: _CaKey
) -> dict[str, list[bytes] | dict[str, bytes]]:
    """What each file setting's files hold, by setting: the EU DSCs by key usage."""
    eu_keys = httpx.get(f"{eu.base_url}/keys", timeout=5).json()["eu"]
    dscs = {
        usage: _pem(x509.load_der_x509_certificate(base64.b64decode(key["certificate"])))
        for key in eu_keys
        for usage in key["keyUsage"]
    }
    [domestic_key] = httpx.get(f"{domestic.base_url}/keys", timeout=5).json()["domestic"]
    raw = base64.b64decode(domestic_key["publicKey"])
    client, client_key = issue_certificate("signing-gateway", (_CA_NAME, ca[1]), client=True)
    key_pem = client_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tls = {"CA_BUNDLE": [_pem(ca[0])], "CLIENT_CERT": [_pem(client)], "CLIENT_KEY": [key_pem]}
    return {
        "SIGNING_GATEWAY_TRUST__EU_CERTIFICATES": dscs,
        "SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS": [
            _pem(ed25519.Ed25519PublicKey.from_public_bytes(raw))
        ],
        "SIGNING_GATEWAY_AUTH__JWKS_FILE": [json.dumps(issuer.jwks()).encode()],
        **{
            f"SIGNING_GATEWAY_{signer}_SIGNER__{name}": content
            for signer in ("EU", "DOMESTIC")
            for name, content in tls.items()
        },
    }


def _under(root: Path, path: PurePosixPath) -> Path:
    """Where `path` of the pod is under the temporary root."""
    return root / path.relative_to("/")


def _pod_environment(
    root: Path,
    fakes: dict[str, FakeSignerProcess],
    fronts: dict[str, TlsFront],
    issuer: LocalTokenIssuer,
    ca: _CaKey,
) -> dict[str, str]:
    """The container's environment, its mounts made under `root` and its files written there."""
    objects = manifests()
    env = {**image_environment(), **container_env(objects)}
    for mount in mounted_volumes(objects):
        _under(root, mount).mkdir(parents=True)
    contents = _file_contents(fakes["eu"], fakes["domestic"], issuer, ca)
    for name, paths in named_files(env).items():
        if name == "SIGNING_GATEWAY_AUDIT__FILE":
            continue  # the gateway creates it, in its writable volume
        assert name in contents, f"the test makes no file for {name}"
        given = contents[name]
        for index, path in enumerate(paths):
            if isinstance(given, dict):  # the DSC of the usage the file is named after
                [usage] = [usage for usage in given if usage in path.name]
                data = given[usage]
            else:
                data = given[index]
            _under(root, path).write_bytes(data)
    # A path of the pod begins a value or follows a quote (in a JSON list): moved under `root`
    # in one pass, so a moved path under a mount of the pod (/tmp) is not moved again.
    mounts = "|".join(re.escape(str(mount)) for mount in mounted_volumes(objects))
    pod_path = re.compile(rf"""(?<![^\s"])(?:{mounts})/""")
    env = {name: pod_path.sub(lambda found: f"{root}{found[0]}", v) for name, v in env.items()}
    for name, role in SIGNER_URLS.items():
        assert env[name].startswith("https://")
        assert ".invalid" in env[name]  # a placeholder, marked as one
        env[name] = fronts[role].base_url
    return env


def test_the_deployment_starts_ready_and_signs(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path
) -> None:
    """With the manifest's settings and files, /readyz on the probe port is 200 and /v1/dcc signs.

    Both signers are reached over mutual TLS with the Secret's CA and client certificate, and
    the signed request also leaves its audit record in the file of the writable volume.
    """
    _deploy_and_sign(fakes, tmp_path, image=None)


def test_the_image_holds_its_lock_and_every_module_imports(image: Image) -> None:
    """The replayed image's virtualenv holds the runtime lock's pins, and each module imports.

    Imported as a container of the image would, with its environment, from the installed
    wheel: a module that needs a package only the tests' lock has, or data the wheel left
    out, fails here.
    """
    done = subprocess.run(  # noqa: S603 - the image's own interpreter
        image.as_a_container(image.program(["python", "-c", _INVENTORY])),
        env=image.env,
        cwd=image.path(image.workdir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    locked = _runtime_lock()
    installed: dict[str, str] = found["installed"]
    assert {name: installed.get(name) for name in locked} == locked
    # What a venv brings (pip; setuptools on 3.11) and the wheel: nothing else.
    assert set(installed) - set(locked) <= {"pip", "setuptools", "signing-gateway"}
    assert found["failed"] == {}
    assert len(found["modules"]) > 100  # every module of both packages, not a few
    assert all(path.startswith(f"{image.root}/opt/venv/") for path in found["modules"].values())


def test_the_image_as_the_deployment_runs_it_starts_ready_and_signs(
    image: Image, fakes: tuple[FakeSignerProcess, FakeSignerProcess]
) -> None:
    """The replayed image, run under the Deployment's security context and files, signs a DCC.

    The Secret's files are mode 0440 of the pod's `fsGroup` and the ConfigMaps' 0644, as the
    kubelet makes them, and the audit volume is writable through that group only; the process is
    the image's entry point and command, as the image's user, without capabilities, on a root
    file system read-only but for `/tmp` (`Image.as_a_container`). The image's health check
    answers 0 while it serves.
    """
    objects = manifests()
    security = pod_spec(objects)["securityContext"]
    container = gateway_container(objects)["securityContext"]
    # What `as_a_container` does is what the Deployment asks for.
    assert image.user == (security["runAsUser"], security["runAsGroup"])
    assert image.user in image.accounts.values()  # USER names the account the image makes
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    writable = {
        str(path) for path, volume in mounted_volumes(objects).items() if "emptyDir" in volume
    }
    assert writable == {
        "/tmp",  # noqa: S108 - the pod's own /tmp, an emptyDir
        str(PurePosixPath(container_env(objects)["SIGNING_GATEWAY_AUDIT__FILE"]).parent),
    }
    assert image.exposed == sorted(container_ports(objects).values())
    pod_root = Path(tempfile.mkdtemp(prefix="pod-"))
    try:
        pod_root.chmod(0o755)  # the image's user walks into it, as into the pod's /
        _deploy_and_sign(fakes, pod_root, image=image)
    finally:
        shutil.rmtree(pod_root)


def _deploy_and_sign(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], root: Path, image: Image | None
) -> None:
    signers = dict(zip(("eu", "domestic"), fakes, strict=True))
    objects = manifests()
    env = container_env(objects)
    issuer = LocalTokenIssuer(
        issuer=env["SIGNING_GATEWAY_AUTH__ISSUER"], audience=env["SIGNING_GATEWAY_AUTH__AUDIENCE"]
    )
    ca = issue_certificate(_CA_NAME, None)
    (root / "fronts").mkdir()
    with _tls_fronts(ca, signers, root / "fronts") as fronts:
        pod = _pod_environment(root / "pod", signers, fronts, issuer, ca)
        if image is not None:
            _kubelet_modes(root / "pod", objects)
            # The image's variables as its replay set them (`PATH` leads to its virtualenv),
            # not as the Dockerfile spells them; the Deployment's still override them.
            pod |= {name: value for name, value in image.env.items() if name not in env}
        _start_ready_and_sign(pod, issuer, image)
        for role, front in fronts.items():
            assert front.client_names, f"the gateway never reached the {role} signer"
            assert set(front.client_names) == {"signing-gateway"}, role
    audit = pod["SIGNING_GATEWAY_AUDIT__FILE"]
    records = [orjson.loads(line) for line in Path(audit).read_bytes().splitlines()]
    assert [record["outcome"] for record in records] == ["issued"]


def _start_ready_and_sign(
    pod: dict[str, str], issuer: LocalTokenIssuer, image: Image | None = None
) -> None:
    """Run `serve` with `pod`'s environment until /readyz answers 200, and sign one DCC.

    With `image`, as a container of it runs, whose health check must pass while it serves.
    """
    probe_port = free_port()
    pod |= {"SIGNING_GATEWAY_HOST": "127.0.0.1", "SIGNING_GATEWAY_PROBE_PORT": str(probe_port)}
    with running_gateway_process(pod, ready=False, image=image) as gateway:
        readyz = f"http://127.0.0.1:{probe_port}/readyz"
        wait_ready(gateway, readyz)
        assert httpx.get(readyz, timeout=5).json()["status"] == "ready"
        token = issuer.mint(subject="platform-check", scopes=["dcc:sign"])
        signed = httpx.post(
            f"{gateway.base_url}/v1/dcc",
            json=eu_vaccination(),
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert signed.status_code == 200, signed.text
        assert signed.json()["credential"].startswith("HC1:")
        if image is not None:
            check = subprocess.run(  # noqa: S603 - the image's HEALTHCHECK command
                image.as_a_container(image.program(image.healthcheck)),
                env={**image.env, **pod},
                cwd=image.path(image.workdir),
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            assert check.returncode == 0, check.stdout + check.stderr


#: Run by the image's interpreter: what is installed, and every module of both packages.
_INVENTORY = """
import importlib, importlib.metadata as metadata, json, pkgutil
import re
installed = {
    re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version
    for d in metadata.distributions()
}
modules, failed = {}, {}
for top in ("signing_gateway", "fake_signer"):
    package = importlib.import_module(top)
    modules[top] = package.__file__
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        try:
            modules[info.name] = importlib.import_module(info.name).__file__
        except Exception as exc:
            failed[info.name] = repr(exc)
print(json.dumps({"installed": installed, "modules": modules, "failed": failed}))
"""


def _runtime_lock() -> dict[str, str]:
    """The runtime lock's pins: name (normalised as PEP 503 does) to version."""
    text = (ROOT / "requirements-runtime.lock").read_text("utf-8")
    return {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", text, re.MULTILINE)
    }


def _kubelet_modes(root: Path, objects: dict[str, Manifest]) -> None:
    """Give the pod's mounts under `root` the owners and modes the kubelet gives them.

    Every volume's files and folder belong to the pod's `fsGroup`; a ConfigMap's or Secret's
    files have its `defaultMode` (0644 unless set), and what lies above the mounts is root's,
    0755. An emptyDir is writable by the group alone: stricter than the kubelet's 0777, so the
    gateway is seen to write its audit file through the group the pod gives it.
    """
    fs_group = pod_spec(objects)["securityContext"]["fsGroup"]
    for directory in [root, *root.rglob("*")]:
        if directory.is_dir():
            os.chown(directory, 0, 0)
            directory.chmod(0o755)
    for mount, volume in mounted_volumes(objects).items():
        path = root / mount.relative_to("/")
        os.chown(path, 0, fs_group)
        source = volume.get("configMap") or volume.get("secret")
        if source is None:  # an emptyDir
            path.chmod(0o2770)
            continue
        path.chmod(0o2755)
        for item in path.iterdir():
            os.chown(item, 0, fs_group)
            item.chmod(source.get("defaultMode", 0o644))
