"""signing-gateway: validate, sign (through HSM-backed signers) and verify health certificates."""
