"""HC1 encoding, keys and the domestic nonce store, checked without a server."""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib

import base45
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pycose.keys import CoseKey
from pycose.messages import Sign1Message

from fake_signer import hcert, keys
from fake_signer.domestic import NonceStore
from fake_signer.errors import WireInputError
from fake_signer.serving import text_response


@pytest.fixture(scope="module")
def material():
    """One generated key set for the module."""
    return keys.generate_key_material("NL")


def test_hc1_round_trip_with_pycose(material):
    """An encoded credential decodes with base45/zlib/cbor2 and verifies with pycose."""
    key = material.eu[keys.KeyUsage.TEST]
    dcc = {"ver": "1.3.0", "t": [{"tg": "840539006"}], "n": 1.5}
    signed = hcert.issue_credential(
        key=key.private_key, kid=key.kid, issuer="NL", issued_at=10, expires_at=20, dcc=dcc
    )
    tagged = cbor2.loads(zlib.decompress(base45.b45decode(signed.credential.removeprefix("HC1:"))))
    protected, unprotected, payload, signature = tagged.value
    assert tagged.tag == 18
    assert cbor2.loads(protected) == {1: -7, 4: key.kid}
    assert cbor2.loads(payload) == {1: "NL", 4: 20, 6: 10, -260: {1: dcc}}
    assert signature == signed.signature
    assert len(signature) == 64
    message = Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)
    message.key = CoseKey.from_pem_public_key(
        key.certificate.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert message.verify_signature()


def test_kids_follow_the_definition(material):
    """EU kid = SHA-256(DSC DER)[:8]; domestic kid = SHA-256(raw public key)[:8]."""
    for key in material.eu.values():
        der = key.certificate.public_bytes(serialization.Encoding.DER)
        assert key.kid == hashlib.sha256(der).digest()[:8]
        eku = key.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [key.usage.eku_oid]
        validity = key.certificate.not_valid_after_utc - dt.datetime.now(dt.UTC)
        assert validity > dt.timedelta(days=700)
    assert material.domestic.kid == hashlib.sha256(material.domestic.public_raw).digest()[:8]


def test_keys_save_and_load_round_trip(material, tmp_path):
    """Saved key material loads back with identical kids and certificates."""
    keys.save(material, tmp_path)
    loaded = keys.load_or_create(tmp_path, "NL")
    assert loaded.published(eu=True, domestic=True) == material.published(eu=True, domestic=True)


def test_saved_private_keys_are_readable_by_the_owner_only(material, tmp_path):
    """Pin that every private key file is written mode 0600 (certificates need no secrecy)."""
    keys.save(material, tmp_path)
    modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.glob("*.key.pem")}
    assert len(modes) == 5
    assert set(modes.values()) == {0o600}


def test_keys_of_another_country_are_refused(material, tmp_path):
    """Keys made for NL are not reused for DE: the credentials' iss would contradict the DSC."""
    keys.save(material, tmp_path)
    with pytest.raises(ValueError, match="holds keys of country NL, not DE"):
        keys.load_or_create(tmp_path, "DE")


@pytest.mark.parametrize("name", ["csca.key.pem", "dsc-vaccination.key.pem"])
def test_keys_dir_refuses_an_ed25519_key_where_an_ec_key_belongs(material, tmp_path, name):
    """An ES256 slot holding the domestic Ed25519 key is refused at load, naming the file."""
    keys.save(material, tmp_path)
    (tmp_path / name).write_bytes((tmp_path / "domestic-ed25519.key.pem").read_bytes())
    with pytest.raises(keys.KeysDirError, match=f"cannot load {name}: not an EC private key"):
        keys.load_or_create(tmp_path, "NL")


@pytest.mark.parametrize("stem", ["csca", "dsc-test"])
def test_keys_dir_refuses_a_key_that_is_not_its_certificates(material, tmp_path, stem):
    """A private key from another key set beside a certificate is refused at load, naming both.

    Signed with it, every credential would fail to verify against the certificate published.
    """
    keys.save(material, tmp_path)
    keys.save(keys.generate_key_material("NL"), tmp_path / "other")
    (tmp_path / f"{stem}.key.pem").write_bytes(
        (tmp_path / "other" / f"{stem}.key.pem").read_bytes()
    )
    with pytest.raises(
        keys.KeysDirError, match=rf"{stem}\.key\.pem is not the key of {stem}\.crt\.pem"
    ):
        keys.load_or_create(tmp_path, "NL")


def test_keys_dir_refuses_a_dsc_of_another_csca(material, tmp_path):
    """A DSC (with its own key) from another key set is refused: it does not chain to the CSCA."""
    keys.save(material, tmp_path)
    keys.save(keys.generate_key_material("NL"), tmp_path / "other")
    for name in ("dsc-recovery.key.pem", "dsc-recovery.crt.pem"):
        (tmp_path / name).write_bytes((tmp_path / "other" / name).read_bytes())
    with pytest.raises(
        keys.KeysDirError, match=r"dsc-recovery\.crt\.pem is not issued by csca\.crt\.pem"
    ):
        keys.load_or_create(tmp_path, "NL")


def _saved_at(tmp_path, made):
    """Save a key set generated as if at `made` (the DSCs end `DSC_VALIDITY` after it)."""
    material = keys.generate_key_material("NL", now=made)
    keys.save(material, tmp_path)
    return material


@pytest.mark.parametrize(
    ("age", "what"),
    [
        (keys.DSC_VALIDITY + dt.timedelta(minutes=5), "an expired certificate"),
        (keys.DSC_VALIDITY - dt.timedelta(hours=12), "a certificate ending within a day"),
    ],
)
def test_keys_dir_whose_dscs_end_is_refused_naming_the_first(tmp_path, age, what):
    """A DSC that has ended, or ends within the margin, stops the start, naming it and its end."""
    material = _saved_at(tmp_path, dt.datetime.now(dt.UTC) - age)
    end = material.eu[keys.KeyUsage.VACCINATION].certificate.not_valid_after_utc
    expected = (
        f"keys dir {tmp_path} holds {what}, dsc-vaccination.crt.pem valid until "
        f"{end:%Y-%m-%dT%H:%M:%SZ}: delete or empty the directory for fresh keys"
    )
    with pytest.raises(keys.KeysDirError) as refused:
        keys.load_or_create(tmp_path, "NL")
    assert str(refused.value) == expected


def test_keys_dir_whose_csca_ended_is_refused_naming_it(material, tmp_path):
    """An ended CSCA is refused by name, even while the DSCs saved with it have not ended."""
    keys.save(material, tmp_path)
    old = dt.datetime.now(dt.UTC) - keys.CSCA_VALIDITY - dt.timedelta(days=1)
    _, csca = keys.generate_csca("NL", old)
    (tmp_path / "csca.crt.pem").write_bytes(csca.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(keys.KeysDirError, match=r"expired certificate, csca\.crt\.pem valid until"):
        keys.load_or_create(tmp_path, "NL")


def test_keys_dir_made_ahead_of_this_clock_is_refused_naming_the_start(tmp_path):
    """Pin that keys made on a machine whose clock ran a day ahead stop the start, by name.

    Backdating covers an hour of difference; beyond it a verifier would refuse each credential.
    """
    made = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    material = _saved_at(tmp_path, made)
    start = material.csca.not_valid_before_utc
    with pytest.raises(keys.KeysDirError) as refused:
        keys.load_or_create(tmp_path, "NL")
    assert str(refused.value) == (
        f"keys dir {tmp_path} holds a certificate not valid yet, csca.crt.pem valid from "
        f"{start:%Y-%m-%dT%H:%M:%SZ}: check this machine's clock, or delete or empty the "
        "directory for fresh keys"
    )


def test_keys_dir_with_more_than_the_margin_left_loads(tmp_path):
    """A DSC with a little more than the margin left still loads: it is not expiring yet."""
    made = dt.datetime.now(dt.UTC) - keys.DSC_VALIDITY + keys.VALIDITY_MARGIN
    material = _saved_at(tmp_path, made + dt.timedelta(hours=1))
    loaded = keys.load_or_create(tmp_path, "NL")
    assert loaded.published(eu=True, domestic=True) == material.published(eu=True, domestic=True)


def test_keys_dir_with_exactly_the_margin_left_loads(material, tmp_path):
    """Pin that a key set whose first end is exactly a day away loads; a second less does not.

    At its very end the certificate is called expired, no longer one ending within a day.
    """
    keys.save(material, tmp_path)
    _, end = material.signing_end(keys.KeyUsage.VACCINATION)
    assert keys.load_or_create(tmp_path, "NL", now=end - keys.VALIDITY_MARGIN)
    with pytest.raises(keys.KeysDirError, match="a certificate ending within a day"):
        keys.load_or_create(
            tmp_path, "NL", now=end - keys.VALIDITY_MARGIN + dt.timedelta(seconds=1)
        )
    with pytest.raises(keys.KeysDirError, match="holds an expired certificate"):
        keys.load_or_create(tmp_path, "NL", now=end)


def test_nonce_store_is_single_use_with_ttl():
    """A nonce works once, unknown nonces fail, and nonces expire after the TTL."""
    now = [0.0]
    store = NonceStore(lambda: now[0], ttl=10)
    first = store.issue(3)
    assert store.consume(first) == 3
    with pytest.raises(WireInputError):
        store.consume(first)
    late = store.issue(1)
    now[0] = 10.0
    with pytest.raises(WireInputError):
        store.consume(late)
    assert len(store) == 0


def test_nonces_expire_after_five_minutes_by_default():
    """Without a TTL given, a nonce works until 300 s after it was issued, not from then on."""
    now = [1000.0]
    store = NonceStore(lambda: now[0])
    used, late = store.issue(1), store.issue(1)
    now[0] += 299.9
    assert store.consume(used) == 1
    now[0] += 0.1
    with pytest.raises(WireInputError, match="expired"):
        store.consume(late)


def test_nonce_asked_for_too_many_credentials_stays_usable():
    """A request for more credentials than the nonce allows is refused and spends nothing."""
    store = NonceStore(lambda: 0.0, ttl=10)
    nonce = store.issue(1)
    with pytest.raises(WireInputError, match="2 attribute sets for 1 credentials"):
        store.consume(nonce, wanted=2)
    assert store.consume(nonce, wanted=1) == 1


def test_nonce_check_refuses_as_consume_does_and_uses_nothing():
    """`check` answers what `consume` would, and the nonce stays usable after it."""
    store = NonceStore(lambda: 0.0, ttl=10)
    nonce = store.issue(2)
    assert store.check(nonce, wanted=2) == 2
    with pytest.raises(WireInputError, match="3 attribute sets for 2 credentials"):
        store.check(nonce, wanted=3)
    with pytest.raises(WireInputError, match="unknown"):
        store.check("bm90IGlzc3VlZA==")
    assert store.consume(nonce, wanted=2) == 2
    with pytest.raises(WireInputError, match="already used"):
        store.check(nonce)


def test_text_answer_escapes_what_utf8_cannot_encode():
    """A plain-text error quoting a lone surrogate is sent with a backslash escape, not a 500."""
    response = text_response(400, "unknown fields: \ud800")
    assert response.body == b"unknown fields: \\ud800"
    assert response.content_type == "text/plain"
    assert response.charset == "utf-8"
