"""Does an identifier say when it was made? (P4)

Chorus ids are 128 random bits written as 32 hex digits (``core.ids.new_id``). A time-based
UUID (version 1, 6 or 7) carries its creation time in its leading bits; an autoincrement or
otherwise non-random id reveals insertion order. A single random id matches the time-UUID
pattern by chance about once in ten thousand, so a column is judged on all of its ids.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Sequence

_HEX32 = re.compile(r"[0-9a-f]{32}")
_GREGORIAN_TO_UNIX_S = 12_219_292_800
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp()


def normalized(value: str) -> str:
    return value.replace("-", "").lower()


def is_random_hex_id(value: str) -> bool:
    return _HEX32.fullmatch(normalized(value)) is not None


def embedded_time(value: str) -> float | None:
    """The Unix time a version 1, 6 or 7 UUID would carry, or None if it is not one of them."""
    digits = normalized(value)
    if _HEX32.fullmatch(digits) is None or digits[16] not in "89ab":
        return None
    version = digits[12]
    if version == "7":
        return int(digits[:12], 16) / 1000.0
    if version == "1":
        ticks = int(digits[13:16] + digits[8:12] + digits[:8], 16)
    elif version == "6":
        ticks = int(digits[:12] + digits[13:16], 16)
    else:
        return None
    return ticks / 10_000_000 - _GREGORIAN_TO_UNIX_S


def looks_time_based(value: str, *, now: float | None = None) -> bool:
    """A time-UUID whose embedded time is plausible (since 2000, at most a year ahead)."""
    moment = embedded_time(value)
    if moment is None:
        return False
    latest = (now if now is not None else dt.datetime.now(dt.UTC).timestamp()) + 366 * 86_400
    return _EARLIEST <= moment <= latest


def time_ordered_share(values: Sequence[str]) -> float:
    """The share of ``values`` that look like time-based UUIDs."""
    if not values:
        return 0.0
    return sum(looks_time_based(value) for value in values) / len(values)


MIN_ROWS_FOR_ORDER = 8


def increases_with_insertion(values_in_insertion_order: Sequence[str]) -> bool:
    """Ids strictly increasing in insertion order: a counter or a clock, not chance.

    For n random ids the chance is 1/n!, so only columns with enough rows are judged.
    """
    if len(values_in_insertion_order) < MIN_ROWS_FOR_ORDER:
        return False
    keys = [_sort_key(value) for value in values_in_insertion_order]
    return all(a < b for a, b in itertools.pairwise(keys))


def _sort_key(value: str) -> tuple[int, str]:
    stripped = value.strip()
    if stripped.isdigit():
        return (int(stripped), "")
    return (-1, normalized(stripped))
