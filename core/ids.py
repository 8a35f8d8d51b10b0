"""Identifiers that say nothing about when they were made (P4).

Every stored id is 128 bits from the operating system's CSPRNG: never uuid1/uuid7, never a
counter, so neither ids nor their sort order reveal arrival order.
"""

from __future__ import annotations

import secrets


def new_id() -> str:
    """A random 32-character hex id."""
    return secrets.token_hex(16)


def new_secret(nbytes: int = 32) -> bytes:
    return secrets.token_bytes(nbytes)
