"""Clients for the downstream signers: the only code that knows their URLs and wire formats.

``http`` builds the HTTP clients and maps failures into the ``errors`` tree; ``eu`` and
``domestic`` speak the two signer contracts (CONTRACT §2).
"""
