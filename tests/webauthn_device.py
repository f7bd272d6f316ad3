"""A security key in software, for the tests: it answers WebAuthn's create and get the way a
real key does (CTAP's attestation "none", an ECDSA P-256 key, a sign count), so the server's
checks by py_webauthn run on real signatures."""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

UP, UV, AT = 0x01, 0x04, 0x40


def _client_data(kind: str, challenge: str, origin: str) -> bytes:
    return json.dumps(
        {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
    ).encode()


@dataclass
class SoftKey:
    """One key with one credential, made on the first :meth:`create`."""

    origin: str = "https://clinic.test"
    sign_count: int = 0
    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    rp_id: str = ""

    def _cose_key(self) -> bytes:
        numbers = self.private.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def create(self, options: dict[str, Any] | str) -> str:
        """Answer ``navigator.credentials.create`` with these options, as the page's script
        sends it (JSON)."""
        if isinstance(options, str):
            options = json.loads(options)
        assert isinstance(options, dict)
        self.rp_id = options["rp"]["id"]
        client_data = _client_data("webauthn.create", options["challenge"], self.origin)
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([UP | AT])
            + struct.pack(">I", self.sign_count)
            + bytes(16)  # AAGUID
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return self._answer(
            client_data,
            attestationObject=bytes_to_base64url(attestation),
            transports=["usb", "nfc"],
        )

    def get(self, options: dict[str, Any] | str, *, count_up: bool = True) -> str:
        """Answer ``navigator.credentials.get``: sign the challenge (counting up, as keys do,
        unless ``count_up`` is false: a copied key)."""
        if isinstance(options, str):
            options = json.loads(options)
        assert isinstance(options, dict)
        allowed = [base64url_to_bytes(c["id"]) for c in options.get("allowCredentials", [])]
        assert self.credential_id in allowed, "the login offered this key"
        if count_up:
            self.sign_count += 1
        client_data = _client_data("webauthn.get", options["challenge"], self.origin)
        auth_data = (
            hashlib.sha256(options["rpId"].encode()).digest()
            + bytes([UP])
            + struct.pack(">I", self.sign_count)
        )
        signature = self.private.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return self._answer(
            client_data,
            authenticatorData=bytes_to_base64url(auth_data),
            signature=bytes_to_base64url(signature),
        )

    def _answer(self, client_data: bytes, **response: Any) -> str:
        """The credential as static/security_key.js sends it, binary parts in base64url."""
        raw_id = bytes_to_base64url(self.credential_id)
        return json.dumps(
            {
                "id": raw_id,
                "rawId": raw_id,
                "type": "public-key",
                "clientExtensionResults": {},
                "response": {"clientDataJSON": bytes_to_base64url(client_data), **response},
            }
        )
