"""The cryptographic primitives of secure aggregation, each a thin call into a maintained library.

X25519 key agreement, HKDF-SHA256, ChaCha20-Poly1305 and the mask streams (AES-128-CTR or
ChaCha20) come from ``cryptography`` (OpenSSL); Shamir secret sharing over GF(2^128) comes from
PyCryptodome; commitments are SHA-256 from ``hashlib``. Importing this module without the
``secure`` extra raises a one-line UsageError that names it.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from typing import Any

from hpcopt.errors import UsageError

try:
    from Crypto.Protocol.SecretSharing import Shamir
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError as exc:
    raise UsageError(
        f"secure aggregation needs the 'secure' extra (pip install 'hpcopt[secure]'); "
        f"missing: {exc.name}"
    ) from None

__all__ = [
    "COMMIT_BYTES",
    "KEY_BYTES",
    "PRGS",
    "SEALED_BYTES",
    "SHARE_BYTES",
    "agree",
    "combine",
    "commit",
    "mask_stream",
    "new_private_key",
    "new_seed",
    "open_sealed",
    "private_bytes",
    "public_bytes",
    "public_of_private",
    "seal",
    "split",
]

KEY_BYTES = 32  # an X25519 public key, a private key, a self-mask seed
SHARE_BYTES = 32  # one Shamir share of a 32-byte secret (two GF(2^128) shares)
PLAIN_SHARES = 2 * SHARE_BYTES  # what user u sends user v: v's shares of u's key and seed
SEALED_BYTES = PLAIN_SHARES + 16  # ChaCha20-Poly1305 adds a 16-byte tag; the nonce is implied
COMMIT_BYTES = 32  # SHA-256 of the self-mask seed
PRGS = ("aes-ctr", "chacha20")
_HALF = 16


def new_private_key() -> X25519PrivateKey:
    """A fresh X25519 private key."""
    return X25519PrivateKey.generate()


def new_seed() -> bytes:
    """A fresh 32-byte self-mask seed."""
    return secrets.token_bytes(KEY_BYTES)


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes_raw()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def public_of_private(raw: bytes) -> bytes:
    """The public key of the raw 32-byte private key ``raw``."""
    return public_bytes(X25519PrivateKey.from_private_bytes(raw))


def agree(private: X25519PrivateKey | bytes, public: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for ``purpose`` from X25519(private, public), through HKDF-SHA256."""
    if isinstance(private, bytes):
        private = X25519PrivateKey.from_private_bytes(private)
    shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=purpose).derive(shared)


def mask_stream(seed: bytes, prg: str) -> Any:
    """A keystream generator (``update_into(zeros, out)``) keyed by HKDF(seed)."""
    if prg == "aes-ctr":
        key = HKDF(hashes.SHA256(), 16, salt=None, info=b"hpcopt mask aes").derive(seed)
        return Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"hpcopt mask chacha").derive(seed)
    return Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()


def split(secret: bytes, threshold: int, users: int) -> list[bytes]:
    """Shamir shares (``threshold`` of ``users``) of a 32-byte secret; share i is for user i."""
    lo = Shamir.split(threshold, users, secret[:_HALF])
    hi = Shamir.split(threshold, users, secret[_HALF:])
    return [a + b for (_, a), (_, b) in zip(lo, hi, strict=True)]


def combine(shares: list[tuple[int, bytes]]) -> bytes:
    """The 32-byte secret from exactly ``threshold`` (user, share) pairs."""
    lo = [(user + 1, share[:_HALF]) for user, share in shares]
    hi = [(user + 1, share[_HALF:]) for user, share in shares]
    return Shamir.combine(lo) + Shamir.combine(hi)


def _nonce(sender: int, receiver: int) -> bytes:
    """One key serves both directions of a pair; the nonce tells them apart."""
    return struct.pack("<IIxxxx", sender, receiver)


def seal(key: bytes, sender: int, receiver: int, plaintext: bytes) -> bytes:
    """ChaCha20-Poly1305 ciphertext and tag of ``plaintext`` from ``sender`` to ``receiver``."""
    return ChaCha20Poly1305(key).encrypt(_nonce(sender, receiver), plaintext, None)


def open_sealed(key: bytes, sender: int, receiver: int, sealed: bytes) -> bytes | None:
    """The plaintext of :func:`seal`, or None when the ciphertext fails authentication."""
    try:
        return ChaCha20Poly1305(key).decrypt(_nonce(sender, receiver), sealed, None)
    except InvalidTag:
        return None


def commit(seed: bytes) -> bytes:
    """SHA-256 commitment to a self-mask seed (checks its reconstruction)."""
    return hashlib.sha256(seed).digest()
