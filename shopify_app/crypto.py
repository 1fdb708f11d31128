"""Encryption at rest for access, refresh and Meta tokens.

Fernet (AES-128-CBC + HMAC-SHA256) from ``cryptography``. ``TOKEN_ENCRYPTION_KEY`` holds one
key or a comma-separated list: the first encrypts, all decrypt, so a key is rotated by putting
the new one first and running ``shopify-app rotate-keys`` to re-encrypt what is stored.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shopify_app.errors import ConfigError


class TokenCipher:
    """Encrypts and decrypts secrets with the configured key list."""

    def __init__(self, keys: tuple[str, ...] | list[str]) -> None:
        if not keys:
            raise ConfigError("TOKEN_ENCRYPTION_KEY is required", variable="TOKEN_ENCRYPTION_KEY")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except (ValueError, TypeError):
            raise ConfigError(
                "TOKEN_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64 bytes); "
                "make one with `shopify-app keygen`",
                variable="TOKEN_ENCRYPTION_KEY",
            ) from None

    def encrypt(self, plaintext: str) -> str:
        """Encrypt ``plaintext`` with the first (current) key."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt with any configured key. Raises :class:`ConfigError` if none fits."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "a stored token cannot be decrypted with any TOKEN_ENCRYPTION_KEY",
                variable="TOKEN_ENCRYPTION_KEY",
            ) from None

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt ``ciphertext`` under the current key."""
        return self._fernet.rotate(ciphertext.encode()).decode()


def generate_key() -> str:
    """A fresh key for ``TOKEN_ENCRYPTION_KEY``."""
    return Fernet.generate_key().decode()
