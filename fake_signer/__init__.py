"""A fake of the two downstream signer services, for tests and local runs.

`fake_signer` speaks the wire protocols of the EU "hcert" issuance server (`POST /get_credential`)
and of the domestic issuance server (`/prepare_issue`, `/issue`, `/issue_static`), and adds what a
test needs from a downstream: published keys (`GET /keys`), a latency model, a capacity limit,
random errors, injectable faults and counters (`/_control`, `/_stats`).

It is a test double, not a signer: keys are generated on the fly, the domestic credentials are a
simulation (Ed25519 instead of Idemix) or, under `--domestic-scheme idemix`, Idemix signed with
the published test key VWS-TEST-0, and nothing here should ever sign a real certificate.
It never imports `signing_gateway`, so contract tests catch drift between two independent peers.
"""
