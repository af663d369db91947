"""Trust stores: DSC parsing (kid, EKU, alg), loading from files and from /keys JSON."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signing_gateway.verification.trust import (
    DomesticKey,
    DomesticTrustStore,
    DscCertificate,
    EuTrustStore,
    KeySet,
    SigningStatus,
    TrustConfigError,
)
from tests.support.credentials import b64, make_csca, make_domestic_signer, make_dsc

HOUR = timedelta(hours=1)
#: The DCC EKU OIDs with a 0 arc after the private-enterprise arc, as Dutch DSCs carry them.
ALTERNATIVE_EKU = {
    "test": "1.3.6.1.4.1.0.1847.2021.1.1",
    "vaccination": "1.3.6.1.4.1.0.1847.2021.1.2",
    "recovery": "1.3.6.1.4.1.0.1847.2021.1.3",
}


def test_kid_is_first_eight_bytes_of_der_sha256():
    """The kid is SHA-256 of the certificate DER, truncated to 8 bytes."""
    dsc = make_dsc(["test"])
    parsed = DscCertificate.from_der(dsc.der)
    assert parsed.kid == hashlib.sha256(dsc.der).digest()[:8]
    assert parsed.kid_b64 == b64(parsed.kid)


@pytest.mark.parametrize(
    ("usages", "expected"),
    [
        (["vaccination"], {"vaccination"}),
        (["test", "recovery"], {"test", "recovery"}),
        (None, {"vaccination", "test", "recovery"}),
    ],
)
def test_key_usages_come_from_dcc_eku(usages, expected):
    """DCC EKU OIDs restrict the usages; no EKU extension allows all three."""
    assert DscCertificate.from_der(make_dsc(usages).der).key_usages == expected


@pytest.mark.parametrize("usage", ["vaccination", "test", "recovery"])
def test_alternative_form_of_a_dcc_eku_restricts_the_same(usage):
    """Pin that 1.3.6.1.4.1.0.1847.2021.1.x restricts a DSC as 1.3.6.1.4.1.1847.2021.1.x does."""
    dsc = make_dsc(None, extra_eku=[ALTERNATIVE_EKU[usage]])
    assert DscCertificate.from_der(dsc.der).key_usages == {usage}


def test_both_forms_of_the_dcc_eku_add_up():
    """A DSC naming one usage in each form may sign those two."""
    dsc = make_dsc(["test"], extra_eku=[ALTERNATIVE_EKU["recovery"]])
    assert DscCertificate.from_der(dsc.der).key_usages == {"test", "recovery"}


def test_signing_certificate_per_usage_reads_the_alternative_eku_form():
    """Per usage the DSC restricted to it signs, not a newer one restricted to another."""
    now = datetime.now(UTC)
    vaccination = DscCertificate.from_der(
        make_dsc(None, extra_eku=[ALTERNATIVE_EKU["vaccination"]], not_before=now - 2 * HOUR).der
    )
    test = DscCertificate.from_der(
        make_dsc(None, extra_eku=[ALTERNATIVE_EKU["test"]], not_before=now - HOUR).der
    )
    store = EuTrustStore([vaccination, test])
    assert store.signing_certificate("vaccination", now=now) == vaccination
    assert store.signing_certificate("test", now=now) == test
    assert store.signing_status("recovery", now=now) is SigningStatus.MISSING


def test_eku_without_dcc_oids_allows_all_usages():
    """An EKU naming only non-DCC purposes (e.g. clientAuth) restricts nothing."""
    dsc = make_dsc(None, extra_eku=["1.3.6.1.5.5.7.3.2"])
    assert DscCertificate.from_der(dsc.der).key_usages == {"vaccination", "test", "recovery"}


def test_alg_follows_key_type_and_validity_is_read():
    """EC P-256 gives ES256, RSA gives PS256; notBefore/notAfter are kept in UTC."""
    not_after = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    ec_dsc = DscCertificate.from_der(make_dsc(["test"], not_after=not_after).der)
    rsa_dsc = DscCertificate.from_der(make_dsc(["test"], rsa_key=True).der)
    assert (ec_dsc.alg, rsa_dsc.alg) == ("ES256", "PS256")
    assert ec_dsc.not_after == not_after
    assert ec_dsc.valid_at(datetime.now(UTC))
    assert not ec_dsc.valid_at(not_after + timedelta(seconds=1))


def test_validity_includes_both_ends():
    """A DSC is valid from its notBefore through its notAfter, both instants included."""
    start = datetime.now(UTC).replace(microsecond=0)
    dsc = DscCertificate.from_der(make_dsc(["test"], not_before=start, not_after=start + HOUR).der)
    second = timedelta(seconds=1)
    instants = [start - second, start, start + HOUR, start + HOUR + second]
    assert [dsc.valid_at(instant) for instant in instants] == [False, True, True, False]


def test_non_p256_curve_is_refused():
    """An EC key on P-384 cannot sign ES256 and is refused."""
    with pytest.raises(TrustConfigError):
        DscCertificate.from_der(make_dsc(["test"], curve=ec.SECP384R1()).der)


def test_rsa_key_shorter_than_2048_bits_is_refused():
    """Pin that a PS256 DSC with an RSA key under 2048 bits is refused, one of 2048 loads."""
    with pytest.raises(TrustConfigError, match="1024 bits"):
        DscCertificate.from_der(make_dsc(["test"], rsa_key=True, rsa_bits=1024).der)
    assert DscCertificate.from_der(make_dsc(["test"], rsa_key=True, rsa_bits=2048).der)


def test_keys_json_rsa_key_shorter_than_2048_bits_is_refused():
    """Pin that a signer's /keys cannot have the gateway trust a short RSA DSC either."""
    entry = make_dsc(["test"], rsa_key=True, rsa_bits=1024).keys_entry(["test"])
    with pytest.raises(TrustConfigError):
        EuTrustStore.from_keys_json([entry])


@pytest.mark.parametrize(
    ("countries", "expected"), [(["BE"], "BE"), ([], None), (["NL", "NL"], "NL")]
)
def test_country_is_the_subject_country_name(countries, expected):
    """The DSC's country is its subject's countryName, None when the subject names none."""
    assert DscCertificate.from_der(make_dsc(["test"], countries=countries).der).country == expected


def test_subject_naming_two_countries_is_refused():
    """A DSC whose subject names two different countries fits no single iss and is refused."""
    with pytest.raises(TrustConfigError):
        DscCertificate.from_der(make_dsc(["test"], countries=["NL", "BE"]).der)


@pytest.mark.parametrize(
    "eku_der", [b"", b"\x30\x03\x02\x01\x01"], ids=["empty", "integer-for-an-oid"]
)
def test_dsc_whose_extended_key_usage_does_not_parse_is_refused(eku_der):
    """A DSC with an EKU extension that is no list of OIDs is a TrustConfigError, from DER or /keys.

    Its usages cannot be read; the error names the certificate like any other unusable one.
    """
    dsc = make_dsc(None, eku_der=eku_der)
    with pytest.raises(TrustConfigError, match="extensions"):
        DscCertificate.from_der(dsc.der)
    with pytest.raises(TrustConfigError, match="extensions"):
        KeySet.from_keys_json({"eu": [dsc.keys_entry(["vaccination"])]})


def test_garbage_der_is_refused():
    """Bytes that are not a certificate raise TrustConfigError."""
    with pytest.raises(TrustConfigError):
        DscCertificate.from_der(b"not a certificate")


def test_signing_certificate_per_usage_prefers_the_specific_one():
    """With a catch-all and a vaccination-only DSC, vaccination uses the specific one."""
    general = DscCertificate.from_der(make_dsc(None).der)
    vaccination = DscCertificate.from_der(make_dsc(["vaccination"]).der)
    store = EuTrustStore([general, vaccination])
    assert store.signing_certificate("vaccination", now=datetime.now(UTC)) == vaccination
    assert store.signing_certificate("test", now=datetime.now(UTC)) == general
    assert store.lookup(general.kid) == general
    assert store.lookup(b"\x00" * 8) is None


def test_lookup_takes_only_the_whole_kid():
    """A kid is trusted only as it is: one with bytes added, or cut short, names no key.

    A credential whose kid merely starts with a trusted one would otherwise be verified with
    that key and released carrying a kid that no verifier can find.
    """
    dsc = DscCertificate.from_der(make_dsc(["test"]).der)
    eu = EuTrustStore([dsc])
    domestic_key = DomesticKey.from_raw(make_domestic_signer().raw_public)
    domestic = DomesticTrustStore([domestic_key])
    for store, kid in ((eu, dsc.kid), (domestic, domestic_key.kid)):
        assert store.lookup(kid) is not None
        assert store.lookup(kid + b"\x00") is None, "a longer kid matched"
        assert store.lookup(kid[:-1]) is None, "a shorter kid matched"


def test_missing_usage_has_no_signing_certificate():
    """A usage no certificate covers has no signing certificate."""
    store = EuTrustStore([DscCertificate.from_der(make_dsc(["test"]).der)])
    assert store.signing_certificate("recovery", now=datetime.now(UTC)) is None


def _dsc(usages: list[str] | None, *, starts: timedelta, ends: timedelta) -> DscCertificate:
    """A DSC for ``usages`` valid from now + ``starts`` until now + ``ends``."""
    now = datetime.now(UTC)
    return DscCertificate.from_der(
        make_dsc(usages, not_before=now + starts, not_after=now + ends).der
    )


def test_expired_dsc_is_not_the_signing_certificate():
    """A usage whose only DSC has ended has no signing certificate, and says it expired."""
    store = EuTrustStore([_dsc(["vaccination"], starts=-timedelta(days=800), ends=-HOUR)])
    now = datetime.now(UTC)
    assert store.signing_certificate("vaccination", now=now) is None
    assert store.signing_status("vaccination", now=now) is SigningStatus.EXPIRED


def test_not_yet_valid_newer_dsc_does_not_replace_the_valid_one():
    """A newer DSC that starts tomorrow does not win over today's valid one until it starts."""
    current = _dsc(["test"], starts=-timedelta(days=30), ends=timedelta(days=30))
    successor = _dsc(["test"], starts=timedelta(days=1), ends=timedelta(days=700))
    store = EuTrustStore([current, successor])
    now = datetime.now(UTC)
    assert store.signing_certificate("test", now=now) == current
    assert store.signing_status("test", now=now) is SigningStatus.VALID
    later = now + timedelta(days=2)
    assert store.signing_certificate("test", now=later) == successor


def test_only_not_yet_valid_dsc_is_reported_as_such():
    """A usage whose only DSC starts later has no signing certificate yet."""
    store = EuTrustStore([_dsc(["recovery"], starts=HOUR, ends=timedelta(days=700))])
    now = datetime.now(UTC)
    assert store.signing_certificate("recovery", now=now) is None
    assert store.signing_status("recovery", now=now) is SigningStatus.NOT_YET_VALID


def test_gap_between_expired_and_next_dsc_counts_as_expired():
    """Between an ended DSC and a successor not yet valid, the usage's DSC has expired."""
    old = _dsc(["test"], starts=-timedelta(days=800), ends=-HOUR)
    successor = _dsc(["test"], starts=HOUR, ends=timedelta(days=700))
    store = EuTrustStore([old, successor])
    assert store.signing_status("test", now=datetime.now(UTC)) is SigningStatus.EXPIRED


def test_next_signing_start_is_the_earliest_start_ahead_for_the_usage():
    """The earliest notBefore still ahead among the usage's DSCs (general ones too), else None."""
    old = _dsc(["test"], starts=-timedelta(days=800), ends=-HOUR)
    later = _dsc(["test"], starts=3 * HOUR, ends=timedelta(days=700))
    general = _dsc(None, starts=2 * HOUR, ends=timedelta(days=700))
    other_usage = _dsc(["recovery"], starts=HOUR, ends=timedelta(days=700))
    store = EuTrustStore([old, later, general, other_usage])
    now = datetime.now(UTC)
    assert store.next_signing_start("test", now=now) == general.not_before
    assert store.next_signing_start("recovery", now=now) == other_usage.not_before
    assert store.next_signing_start("test", now=now + 4 * HOUR) is None
    # One starting at `now` has started: the next one ahead is the later DSC.
    assert store.next_signing_start("test", now=general.not_before) == later.not_before
    assert EuTrustStore([old]).next_signing_start("test", now=now) is None
    assert EuTrustStore([]).next_signing_start("test", now=now) is None


def test_among_several_valid_dscs_the_specific_then_newest_wins():
    """Among valid DSCs the most specific wins, then the latest notBefore; expired ones never."""
    general = _dsc(None, starts=-HOUR, ends=timedelta(days=30))
    older = _dsc(["vaccination"], starts=-timedelta(days=60), ends=timedelta(days=30))
    newer = _dsc(["vaccination"], starts=-timedelta(days=2), ends=timedelta(days=30))
    newest_expired = _dsc(["vaccination"], starts=-timedelta(days=1), ends=-HOUR)
    store = EuTrustStore([general, newest_expired, newer, older])
    now = datetime.now(UTC)
    assert store.signing_certificate("vaccination", now=now) == newer
    assert store.signing_certificate("test", now=now) == general
    assert store.signing_status("recovery", now=now) is SigningStatus.VALID


def test_specific_expired_dsc_falls_back_to_a_valid_general_one():
    """When the usage's own DSC has expired, a valid DSC allowing every usage signs it."""
    general = _dsc(None, starts=-HOUR, ends=timedelta(days=30))
    expired = _dsc(["vaccination"], starts=-timedelta(days=800), ends=-HOUR)
    store = EuTrustStore([expired, general])
    assert store.signing_certificate("vaccination", now=datetime.now(UTC)) == general


def test_missing_usage_status_is_missing():
    """A usage no certificate covers is reported missing, not expired."""
    store = EuTrustStore([_dsc(["test"], starts=-HOUR, ends=HOUR)])
    assert store.signing_status("recovery", now=datetime.now(UTC)) is SigningStatus.MISSING


def test_store_loads_pem_bundle_and_der_files(tmp_path):
    """Files may hold one DER certificate or several PEM certificates."""
    a, b, c = make_dsc(["vaccination"]), make_dsc(["test"]), make_dsc(["recovery"])
    (tmp_path / "a.der").write_bytes(a.der)
    (tmp_path / "bc.pem").write_bytes(b.pem + c.pem)
    store = EuTrustStore.from_files([tmp_path / "a.der", tmp_path / "bc.pem"])
    assert len(store) == 3
    assert store.signing_certificate("test", now=datetime.now(UTC)).kid == b.kid


def test_store_renders_public_keys_json():
    """to_public_json gives CONTRACT's /v1/keys eu entries."""
    dsc = make_dsc(["recovery", "test"])
    store = EuTrustStore([DscCertificate.from_der(dsc.der)])
    assert store.to_public_json() == [
        {
            "kid": b64(dsc.kid),
            "alg": "ES256",
            "keyUsage": ["test", "recovery"],
            "certificate": b64(dsc.der),
        }
    ]


def test_keys_json_round_trip_with_csca_check():
    """A /keys document with DSCs issued by its CSCA loads; usages follow the entry."""
    csca = make_csca()
    dsc = make_dsc(None, issuer=csca)
    doc = {"eu": [dsc.keys_entry(["vaccination"])], "csca": [b64(csca.der)], "domestic": []}
    keys = KeySet.from_keys_json(doc)
    parsed = keys.eu.lookup(dsc.kid)
    assert parsed is not None
    assert (parsed.key_usages, parsed.country) == ({"vaccination"}, "NL")
    assert keys.eu.signing_certificate("test", now=datetime.now(UTC)) is None
    assert len(keys.domestic) == 0


def test_keys_json_dsc_not_issued_by_csca_is_refused():
    """A DSC that its document's CSCA did not sign is refused."""
    doc = {"eu": [make_dsc(["test"], issuer=make_csca()).keys_entry(["test"])]}
    doc["csca"] = [b64(make_csca("Other CSCA").der)]
    with pytest.raises(TrustConfigError):
        KeySet.from_keys_json(doc)


def test_keys_json_dsc_issued_by_any_one_of_several_cscas_loads():
    """With two CSCAs in the document, a DSC issued by the second one is trusted."""
    first, second = make_csca("First CSCA"), make_csca("Second CSCA")
    dsc = make_dsc(["test"], issuer=second)
    doc = {"eu": [dsc.keys_entry(["test"])], "csca": [b64(first.der), b64(second.der)]}
    assert KeySet.from_keys_json(doc).eu.lookup(dsc.kid) is not None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kid", b64(b"\x01" * 8)),
        ("alg", "PS256"),
        ("keyUsage", ["vaccination", "test"]),
        ("keyUsage", []),
        ("keyUsage", [["vaccination"]]),
        ("keyUsage", [{"vaccination": True}]),
        ("certificate", "%%%"),
        ("certificate", "MII\u00e9"),
        ("kid", "\u00e9"),
    ],
)
def test_keys_json_entry_disagreeing_with_certificate_is_refused(field, value):
    """An entry whose kid, alg, usages or certificate are malformed or disagree with the DER."""
    entry = make_dsc(["vaccination"]).keys_entry(["vaccination"])
    entry[field] = value
    with pytest.raises(TrustConfigError):
        EuTrustStore.from_keys_json([entry])


@pytest.mark.parametrize("field", ["kid", "certificate"])
def test_keys_json_base64_with_a_line_break_is_refused(field):
    """Pin that /keys base64 is read strictly: a line break in a kid or certificate is refused.

    Read leniently, the break would be skipped and the entry taken as it would be without it.
    """
    entry = make_dsc(["vaccination"]).keys_entry(["vaccination"])
    entry[field] = entry[field][:4] + "\n" + entry[field][4:]
    with pytest.raises(TrustConfigError, match=f"{field} is not valid base64"):
        EuTrustStore.from_keys_json([entry])


@pytest.mark.parametrize("csca", [None, {}, "", 0], ids=["null", "object", "text", "number"])
def test_keys_json_csca_that_is_not_a_list_is_refused(csca):
    """Pin that a csca member other than a list is refused, not read as no CSCA at all."""
    entry = make_dsc(["vaccination"]).keys_entry(["vaccination"])
    with pytest.raises(TrustConfigError, match="must be lists"):
        KeySet.from_keys_json({"eu": [entry], "csca": csca})


@pytest.mark.parametrize(
    "change",
    [{"kid": None}, {"certificate": None}, {"kid": 8}, {"certificate": ["MII"]}],
    ids=["kid-missing", "certificate-missing", "kid-number", "certificate-list"],
)
def test_keys_json_entry_without_base64_text_is_refused(change):
    """Pin that a kid or certificate missing or not text is a TrustConfigError, not a crash."""
    entry = {**make_dsc(["vaccination"]).keys_entry(["vaccination"]), **change}
    with pytest.raises(TrustConfigError, match="must be a base64 string"):
        EuTrustStore.from_keys_json([entry])


@pytest.mark.parametrize("entry", ["not-an-object", ["kid"], None])
def test_keys_json_eu_entry_that_is_not_an_object_is_refused(entry):
    """Pin that an eu entry other than an object is a TrustConfigError, not a crash."""
    with pytest.raises(TrustConfigError, match="must be objects"):
        EuTrustStore.from_keys_json([entry])


def test_keys_json_listing_a_dsc_twice_is_refused():
    """Pin that two eu entries of one certificate are refused, not the last one kept.

    They may state different key usages; the store holds one entry per kid.
    """
    dsc = make_dsc(None)
    entries = [dsc.keys_entry(["test"]), dsc.keys_entry(["vaccination", "test", "recovery"])]
    with pytest.raises(TrustConfigError, match="more than once"):
        EuTrustStore.from_keys_json(entries)


def test_keys_json_listing_a_domestic_key_twice_is_refused():
    """Pin that a domestic kid listed twice is refused, as an eu one is."""
    entry = make_domestic_signer().keys_entry()
    with pytest.raises(TrustConfigError, match="more than once"):
        DomesticTrustStore.from_keys_json([entry, dict(entry)])


def test_domestic_key_from_raw_pem_and_json():
    """Domestic keys load from raw bytes, PEM files and /keys entries with the same kid."""
    signer = make_domestic_signer()
    key = DomesticKey.from_raw(signer.raw_public)
    assert key.kid == hashlib.sha256(signer.raw_public).digest()[:8]
    assert DomesticKey.from_pem(signer.public_pem) == key
    store = DomesticTrustStore.from_keys_json([signer.keys_entry()])
    assert store.lookup(signer.kid) == key
    assert store.to_public_json() == [signer.keys_entry()]


def test_domestic_store_from_files(tmp_path):
    """PEM public key files load into the domestic store."""
    signer = make_domestic_signer()
    (tmp_path / "k.pem").write_bytes(signer.public_pem)
    assert DomesticTrustStore.from_files([tmp_path / "k.pem"]).lookup(signer.kid) is not None


@pytest.mark.parametrize(
    "entry",
    [
        {"kid": "AAAAAAAAAAA=", "alg": "Ed25519", "publicKey": b64(b"\x02" * 32)},
        {"kid": "x", "alg": "Ed448", "publicKey": b64(b"\x02" * 32)},
        {"kid": "x", "alg": "Ed25519", "publicKey": b64(b"\x02" * 31)},
        {"kid": "\u00e9", "alg": "Ed25519", "publicKey": b64(b"\x02" * 32)},
        {"kid": "x", "alg": "Ed25519", "publicKey": "\u00e9"},
        "not-an-object",
    ],
    ids=["kid-mismatch", "alg", "short-key", "kid-non-ascii", "key-non-ascii", "type"],
)
def test_bad_domestic_entries_are_refused(entry):
    """Domestic /keys entries with a wrong kid, alg, key length or shape are refused."""
    with pytest.raises(TrustConfigError):
        DomesticTrustStore.from_keys_json([entry])


@pytest.mark.parametrize("alg", ["Ed448", "EdDSA", None])
def test_domestic_entry_naming_another_alg_is_refused(alg):
    """Pin that an entry whose key and kid agree is still refused unless its alg is Ed25519."""
    entry = make_domestic_signer().keys_entry()
    entry["alg"] = alg
    with pytest.raises(TrustConfigError, match="Ed25519"):
        DomesticTrustStore.from_keys_json([entry])


def test_eu_file_of_a_pem_other_than_certificates_is_named_as_such(tmp_path):
    """Pin that a PEM file holding no certificate (here a public key) is named a PEM file."""
    path = tmp_path / "key.pem"
    path.write_bytes(make_domestic_signer().public_pem)
    with pytest.raises(TrustConfigError, match="not a PEM certificate file"):
        EuTrustStore.from_files([path])


def test_domestic_pem_of_other_key_type_is_refused():
    """A PEM EC public key is not a domestic key."""
    dsc = make_dsc(["test"])
    pem = dsc.certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(TrustConfigError):
        DomesticKey.from_pem(pem)
