"""What the ingest tests share: the exercises of the usage catalog, the clip they upload, the
types of the upload fixtures (``mint``, ``upload``, ``stored``, ``recording``) and their counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx2

ELIGIBLE_EXERCISES = [f"digit-{d}" for d in range(10)]
RARE_EXERCISE = "rare-1"
CLIP = "7_jackson_32.wav"  # 0.54 s, 8 kHz mono

Mint = Callable[..., str]
Upload = Callable[..., httpx2.Response]


@dataclass(frozen=True)
class Stored:
    objects: int
    rows: int


NOTHING = Stored(objects=0, rows=0)


Recording = Callable[[int], bytes]
