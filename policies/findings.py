"""What an audit check reports: a stable check id, the invariant at stake, and a message; and
what a finding of each id most likely means and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    check: str
    invariant: str
    message: str
    subject: str | None = None


@dataclass(frozen=True)
class Explanation:
    """Why a finding of one id usually appears, and how an operator clears it. Each domain's
    ``checks.py`` explains the finding ids it yields (``EXPLANATIONS``)."""

    cause: str
    remedy: str
