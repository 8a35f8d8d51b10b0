"""What an audit check reports: a stable check id, the invariant at stake, and a message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    check: str
    invariant: str
    message: str
    subject: str | None = None
