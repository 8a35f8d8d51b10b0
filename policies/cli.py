"""The ``chorus audit`` command."""

from __future__ import annotations
