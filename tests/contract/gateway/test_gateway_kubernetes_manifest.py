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
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import httpx
import orjson
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
from tests.support.kubernetes_manifests import (
    container_env,
    image_environment,
    manifests,
    mounted_volumes,
    named_files,
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
    signers = dict(zip(("eu", "domestic"), fakes, strict=True))
    env = container_env(manifests())
    issuer = LocalTokenIssuer(
        issuer=env["SIGNING_GATEWAY_AUTH__ISSUER"], audience=env["SIGNING_GATEWAY_AUTH__AUDIENCE"]
    )
    ca = issue_certificate(_CA_NAME, None)
    (tmp_path / "fronts").mkdir()
    with _tls_fronts(ca, signers, tmp_path / "fronts") as fronts:
        pod = _pod_environment(tmp_path / "pod", signers, fronts, issuer, ca)
        _start_ready_and_sign(pod, issuer)
        for role, front in fronts.items():
            assert front.client_names, f"the gateway never reached the {role} signer"
            assert set(front.client_names) == {"signing-gateway"}, role
    audit = pod["SIGNING_GATEWAY_AUDIT__FILE"]
    records = [orjson.loads(line) for line in Path(audit).read_bytes().splitlines()]
    assert [record["outcome"] for record in records] == ["issued"]


def _start_ready_and_sign(pod: dict[str, str], issuer: LocalTokenIssuer) -> None:
    """Run `serve` with `pod`'s environment until /readyz answers 200, and sign one DCC."""
    probe_port = free_port()
    pod |= {"SIGNING_GATEWAY_HOST": "127.0.0.1", "SIGNING_GATEWAY_PROBE_PORT": str(probe_port)}
    with running_gateway_process(pod, ready=False) as gateway:
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
