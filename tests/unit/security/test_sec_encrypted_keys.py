"""A signer's encrypted client key: refused and named by its setting, never asked for.

No setting gives a key's password. Given no password callback, OpenSSL asks for one on the
process's terminal (or reads its stdin), and the start-up waits there, its event loop held.
These run the gateway on a terminal of its own, as an operator's shell does.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from signing_gateway.security.tls_files import EncryptedKeyError
from signing_gateway.signers.http import build_signer_client
from tests.contract.gateway.gateway_process import free_port
from tests.support.credentials import make_dsc
from tests.support.own_terminal import run_on_own_terminal

#: Seconds a start-up gets to end: it fails at once, or waits for a password for ever.
TIMEOUT_S = 30
PROMPT = "pass phrase"
PASSWORD = "secret"
REFUSED = "is encrypted; give the key without a password"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A trusted DSC, a client certificate, its key encrypted and as it should be."""
    client = make_dsc()
    contents = {
        "dsc.pem": make_dsc(["test"]).pem,
        "client.pem": client.pem,
        "client.key": client.key_pem(),
        "encrypted.key": client.key_pem(password=PASSWORD.encode()),
    }
    for name, content in contents.items():
        (tmp_path / name).write_bytes(content)
    return {name: tmp_path / name for name in contents}


def test_a_signer_client_takes_an_encrypted_keys_password_only_from_its_caller(
    files: dict[str, Path],
) -> None:
    """Pin that an encrypted key without its password is refused, and with it is loaded."""
    cert, key = str(files["client.pem"]), str(files["encrypted.key"])
    options = {
        "connect_timeout": 1.0, "read_timeout": 1.0, "write_timeout": 1.0, "pool_timeout": 1.0,
        "max_connections": 1,
    }  # fmt: skip
    with pytest.raises(EncryptedKeyError):
        build_signer_client("https://signer.invalid", cert=(cert, key), **options)
    assert build_signer_client("https://signer.invalid", cert=(cert, key, PASSWORD), **options)


#: An app from `create_app(Settings(...))` served by uvicorn: nothing checks its files first.
_CREATE_APP = """
from pathlib import Path
import uvicorn
from signing_gateway.app import create_app
from signing_gateway.security.settings import AuthSettings
from signing_gateway.settings import Settings, SignerSettings, TrustSettings
signer = SignerSettings(
    url="https://127.0.0.1:9", client_cert=Path({cert!r}), client_key=Path({key!r})
)
settings = Settings(
    auth=AuthSettings(mode="disabled"),
    trust=TrustSettings(eu_certificates=[Path({trust!r})]),
    {group}=signer,
)
uvicorn.run(create_app(settings), host="127.0.0.1", port={port})
"""


@pytest.mark.parametrize("group", ["eu_signer", "domestic_signer"])
def test_create_app_with_an_encrypted_signer_key_fails_its_start_up_in_one_line(
    files: dict[str, Path], group: str
) -> None:
    """Pin the one line naming the key's setting, exit 3, on a terminal: no password prompt.

    Before, OpenSSL asked `Enter PEM pass phrase:` on the terminal and the start-up waited.
    """
    code = _CREATE_APP.format(
        cert=str(files["client.pem"]),
        key=str(files["encrypted.key"]),
        trust=str(files["dsc.pem"]),
        group=group,
        port=free_port(),
    )
    run = run_on_own_terminal(code, timeout=TIMEOUT_S)
    assert run.returncode == 3, run.output
    setting = f"SIGNING_GATEWAY_{group.upper()}__CLIENT_KEY"
    assert f"start-up failed: {setting}: {REFUSED}" in run.output.splitlines()
    assert PROMPT not in run.output
    assert "Traceback" not in run.output
    assert str(files["encrypted.key"].parent) not in run.output


def test_a_signer_key_encrypted_since_the_check_fails_the_start_up_in_one_line(
    files: dict[str, Path],
) -> None:
    """Pin that a served gateway's start-up names a key encrypted after the check, exit 3.

    The factory checks the files (the key is fine then), then the key is replaced by its
    encrypted form before the lifespan loads it. Before, OpenSSL asked for its password on
    the terminal and the start-up waited there.
    """
    key, encrypted = files["client.key"], files["encrypted.key"]
    encrypted_since_the_check = (
        "import os, uvicorn; from signing_gateway.app import create_served_app\n"
        "def factory():\n"
        "    app = create_served_app()\n"
        f"    os.replace({str(encrypted)!r}, {str(key)!r})\n"
        "    return app\n"
        f"uvicorn.run(factory, factory=True, host='127.0.0.1', port={free_port()})"
    )
    run = run_on_own_terminal(
        encrypted_since_the_check,
        timeout=TIMEOUT_S,
        AUTH__MODE="disabled",
        TRUST__EU_CERTIFICATES=orjson.dumps([str(files["dsc.pem"])]).decode(),
        EU_SIGNER__URL="https://127.0.0.1:9",
        EU_SIGNER__CLIENT_CERT=str(files["client.pem"]),
        EU_SIGNER__CLIENT_KEY=str(key),
    )
    assert run.returncode == 3, run.output
    failed = [
        (record["logger"], record["event"])
        for line in run.output.splitlines()
        if line.startswith("{") and (record := orjson.loads(line))["level"] == "error"
    ]
    assert failed == [
        (
            "signing_gateway.start_up",
            f"start-up failed: SIGNING_GATEWAY_EU_SIGNER__CLIENT_KEY: {REFUSED}",
        ),
        ("uvicorn.error", "Application startup failed. Exiting."),
    ]
    assert PROMPT not in run.output
    assert "Traceback" not in run.output
