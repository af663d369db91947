"""Verification of what the signers return, before anything is released.

``trust`` holds the public keys (EU DSC certificates, domestic keys), ``hcert`` decodes and
verifies HC1 credentials, ``domestic`` verifies the domestic (NL2 simulation) signatures, and
``cbor`` decodes the CBOR in a credential strictly (one item, no repeated map key). ``idemix``
(static QRs), ``idemix_issuance`` (issued CL signatures), ``idemix_keys`` (issuer keys) and
``idemix_der`` verify the real Idemix signer's credentials; in the idemix scheme they run in
worker processes (``runtime.idemix_pool``, ``idemix_answers``). Every failure is a
``CredentialVerificationError`` with a short reason slug.
"""
