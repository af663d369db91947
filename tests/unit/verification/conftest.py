"""Fixtures for the EU credential tests: one vaccination DSC per module and a store trusting it.

``test_domestic_signatures`` defines its own ``trust`` (domestic keys), which wins there.
"""

from __future__ import annotations

import pytest

from signing_gateway.verification.trust import DscCertificate, EuTrustStore
from tests.support.credentials import Dsc, make_dsc


@pytest.fixture(scope="module")
def dsc() -> Dsc:
    """One vaccination DSC shared by a module (subject country NL, like the credentials' iss)."""
    return make_dsc(["vaccination"])


@pytest.fixture(scope="module")
def trust(dsc: Dsc) -> EuTrustStore:
    """A store trusting exactly the module's DSC."""
    return EuTrustStore([DscCertificate.from_der(dsc.der)])
