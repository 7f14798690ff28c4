"""Credentials at rest: encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under the key(s) in COHORTA_SECRET_KEY.

No key, no credentials: a source that needs them cannot be saved, and nothing is derived implicitly from another
setting. Several comma-separated keys allow rotation: the first encrypts, every one decrypts.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from cohorta.errors import Conflict


class NoSecretKey(Conflict):
    """Credentials were sent but the server has no key to encrypt them with."""


class Vault:
    def __init__(self, keys: str | None) -> None:
        parts = [k.strip() for k in (keys or "").split(",") if k.strip()]
        self._fernet = MultiFernet([Fernet(k) for k in parts]) if parts else None

    @property
    def ready(self) -> bool:
        return self._fernet is not None

    def encrypt(self, values: dict[str, str]) -> str:
        if self._fernet is None:
            raise NoSecretKey(
                "credentials cannot be stored: the server has no COHORTA_SECRET_KEY to encrypt them with "
                "(see docs/sources.md); nothing was saved"
            )
        return self._fernet.encrypt(json.dumps(values, sort_keys=True).encode()).decode()

    def decrypt(self, token: str) -> dict[str, str]:
        """The stored credentials; ValueError (without any secret in it) when they cannot be read."""
        if self._fernet is None:
            raise ValueError("the source has credentials but COHORTA_SECRET_KEY is not set")
        try:
            values = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise ValueError("the source's credentials cannot be decrypted: COHORTA_SECRET_KEY changed?") from None
        return {str(k): str(v) for k, v in values.items()}


def generate_key() -> str:
    return Fernet.generate_key().decode()
