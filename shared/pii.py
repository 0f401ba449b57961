"""Phone and ID numbers: stored encrypted, found by a keyed hash, shown masked.

A number is sealed with AES-GCM (so reading it back needs the key) and indexed with an
HMAC-SHA256 of its normalised form (so it can be searched without being stored in clear, and
the index reveals nothing without the key). Both keys derive from one secret,
`GRIDLINK_PII_SECRET`. Only the masked form ever leaves the registry; events and logs carry
neither the number nor its hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NumberKind = Literal["phone", "id_number"]


def normalise(kind: NumberKind, value: str) -> str:
    value = value.strip().replace(" ", "").replace("-", "")
    if kind == "phone":
        for prefix in ("+86", "86"):
            if value.startswith(prefix) and len(value) == len(prefix) + 11:
                return value[len(prefix) :]
        return value
    return value.upper()


def mask(kind: NumberKind, value: str) -> str:
    """138****5678 for phones, 4203**********123X for ID numbers."""
    value = normalise(kind, value)
    keep_start, keep_end = (3, 4) if kind == "phone" else (4, 4)
    hidden = len(value) - keep_start - keep_end
    return value[:keep_start] + "*" * max(hidden, 0) + value[-keep_end:]


class PiiVault:
    def __init__(self, secret: str) -> None:
        material = secret.encode()
        self._cipher = AESGCM(hashlib.sha256(b"gridlink-pii-encryption:" + material).digest())
        self._index_key = hashlib.sha256(b"gridlink-pii-index:" + material).digest()

    def seal(self, kind: NumberKind, value: str) -> dict[str, str]:
        """What a person document keeps of a number: ciphertext, search index, masked form."""
        plain = normalise(kind, value)
        nonce = os.urandom(12)
        sealed = nonce + self._cipher.encrypt(nonce, plain.encode(), kind.encode())
        return {
            "sealed": base64.b64encode(sealed).decode(),
            "index": self.index(kind, plain),
            "masked": mask(kind, plain),
        }

    def open(self, kind: NumberKind, stored: dict[str, str]) -> str:
        sealed = base64.b64decode(stored["sealed"])
        return self._cipher.decrypt(sealed[:12], sealed[12:], kind.encode()).decode()

    def index(self, kind: NumberKind, value: str) -> str:
        digest = hmac.new(self._index_key, f"{kind}:{normalise(kind, value)}".encode(), hashlib.sha256)
        return digest.hexdigest()
