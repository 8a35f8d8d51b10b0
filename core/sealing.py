"""Sealing: data useless without a key that only ever lived in memory (P4, crypto-shredding).

Storage keeps order and time whatever the service does (WAL frames, page order, ``xmin``,
``pg_wal``, object-store metadata, file times, inode numbers, backups). So a pending clip's
audio and every pending value a release publishes, or that anyone could compute from released
audio, is stored only as AEAD ciphertext (AES-256-GCM) under a key derived from its bucket's
memory-only key (``core.keystore``). Destroying that key at release, withdrawal or purge turns
every copy of the ciphertext, wherever it lies, into noise: nothing on the pending side can then
be joined to a released clip.

Each ciphertext's associated data names its bucket, its record and its field, so a sealed
value cannot be moved to another row or read as another field. Sealed blobs are padded to a
size class, so their stored size says at most which class the clip falls in.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import SealBroken

# "Chorus sealed, version 1": lets an auditor tell a sealed value from a plain one.
MAGIC = b"CHS1"
_NONCE_BYTES = 12
_TAG_BYTES = 16
OVERHEAD = len(MAGIC) + _NONCE_BYTES + _TAG_BYTES
_LENGTH = struct.Struct("<Q")
# Blobs (pending audio) are padded to a power of two of at least this many bytes: a 5 MB cap
# leaves eight classes, and a short spoken exercise falls in the first one or two.
MIN_BLOB_CLASS = 64 * 1024
_KDF_INFO = b"chorus pending seal v1"
_MAC_INFO = b"chorus pending digest v1"


def size_class(size: int) -> int:
    """The stored size of a padded blob whose plaintext (with its length prefix) is ``size``."""
    padded = MIN_BLOB_CLASS
    while padded < size:
        padded *= 2
    return padded


def is_sealed(data: bytes) -> bool:
    """Whether ``data`` has the form of a sealed value (an auditor's check; proves nothing
    about the key)."""
    return len(data) >= OVERHEAD and data.startswith(MAGIC)


class Sealer:
    """AEAD under a key derived from one bucket's memory-only key.

    ``record`` and ``field`` name what a value is (a pending row's id and column, a pending
    object's name): they are bound as associated data with the bucket id.
    """

    def __init__(self, bucket_key: bytes, *, bucket_id: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=bucket_id.encode(), info=_KDF_INFO
        ).derive(bucket_key)
        self._aead = AESGCM(derived)
        self._mac_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=bucket_id.encode(), info=_MAC_INFO
        ).derive(bucket_key)
        self.bucket_id = bucket_id

    def digest(self, value: str, *, field: str) -> str:
        """A keyed digest (HMAC-SHA256 under a key derived from the bucket's): equal values
        give equal digests, which only the key's holder can compute, so a database can find
        a row by it without holding anything a copy could be joined on."""
        message = field.encode() + b"\0" + value.encode()
        return hmac.new(self._mac_key, message, hashlib.sha256).hexdigest()

    def _associated(self, record: str, field: str) -> bytes:
        return b"\0".join((self.bucket_id.encode(), record.encode(), field.encode()))

    def seal(self, plaintext: bytes, *, record: str, field: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = self._aead.encrypt(nonce, plaintext, self._associated(record, field))
        return MAGIC + nonce + ciphertext

    def open(self, sealed: bytes, *, record: str, field: str) -> bytes:
        if not is_sealed(sealed):
            raise SealBroken(f"a {field} value is not sealed")
        nonce = sealed[len(MAGIC) : len(MAGIC) + _NONCE_BYTES]
        try:
            return self._aead.decrypt(
                nonce, sealed[len(MAGIC) + _NONCE_BYTES :], self._associated(record, field)
            )
        except InvalidTag:
            raise SealBroken(f"a sealed {field} value did not open under its key") from None

    def seal_blob(self, data: bytes, *, record: str, field: str = "audio") -> bytes:
        """``data`` padded to its size class, then sealed: the stored size is the class's."""
        framed = _LENGTH.pack(len(data)) + data
        padded = framed + bytes(size_class(len(framed) + OVERHEAD) - OVERHEAD - len(framed))
        return self.seal(padded, record=record, field=field)

    def open_blob(self, sealed: bytes, *, record: str, field: str = "audio") -> bytes:
        padded = self.open(sealed, record=record, field=field)
        (length,) = _LENGTH.unpack_from(padded)
        if length > len(padded) - _LENGTH.size:
            raise SealBroken(f"a sealed {field} value has a bad length")
        return padded[_LENGTH.size : _LENGTH.size + length]
