"""The size caps a credential is refused for as `too-large`, as docs/security.md states them."""

from __future__ import annotations

from pathlib import Path

from signing_gateway.verification.domestic import MAX_QR_CHARS
from signing_gateway.verification.hcert import MAX_CREDENTIAL_CHARS, MAX_DECOMPRESSED_BYTES

SECURITY_DOC = Path(__file__).resolve().parents[3] / "docs" / "security.md"


def test_the_documented_caps_are_the_ones_applied():
    """Operators see `too-large` refusals; the page that explains them gives the real caps."""
    [paragraph] = [
        p for p in SECURITY_DOC.read_text().split("\n\n") if "refused as `too-large`" in p
    ]
    text = " ".join(paragraph.split())
    assert f"more than {MAX_CREDENTIAL_CHARS:,} characters" in text
    assert f"more than {MAX_DECOMPRESSED_BYTES:,} bytes" in text
    assert f"static QR of more than {MAX_QR_CHARS:,} characters" in text
