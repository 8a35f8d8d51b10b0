"""The P4 id heuristics: time-based UUIDs and counters are caught, random ids are not."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

from core.ids import new_id
from policies import time_ids


def _uuid7() -> str:
    millis = int(time.time() * 1000)
    raw = bytearray(millis.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(raw)).hex


def _uuid6() -> str:
    v1 = uuid.uuid1()
    ticks = v1.time  # 60-bit count of 100 ns since 1582
    high = ticks >> 12
    low = ticks & 0x0FFF
    digits = f"{high:012x}6{low:03x}" + v1.hex[16:]
    return digits


def test_time_based_uuids_carry_a_plausible_time() -> None:
    now = time.time()
    makers: list[Callable[[], str]] = [
        lambda: uuid.uuid1().hex,
        _uuid6,
        _uuid7,
        lambda: str(uuid.uuid1()),
    ]
    for make in makers:
        value = make()
        assert time_ids.looks_time_based(value), value
        moment = time_ids.embedded_time(value)
        assert moment is not None
        assert abs(moment - now) < 120


def test_random_ids_are_not_mistaken_for_time_based() -> None:
    ids = [new_id() for _ in range(20_000)] + [uuid.uuid4().hex for _ in range(5_000)]
    assert all(time_ids.is_random_hex_id(value) for value in ids)
    assert time_ids.time_ordered_share(ids) < 0.01


def test_counters_and_malformed_ids() -> None:
    assert not time_ids.is_random_hex_id("42")
    assert not time_ids.is_random_hex_id("clip-2026-11-21")
    assert time_ids.increases_with_insertion([str(n) for n in range(1, 20)])
    assert time_ids.increases_with_insertion(sorted(new_id() for _ in range(10)))
    assert not time_ids.increases_with_insertion([str(n) for n in range(1, 5)])  # too few to judge
    shuffled = [new_id() for _ in range(50)]
    assert not time_ids.increases_with_insertion(shuffled)
