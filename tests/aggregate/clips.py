"""FSDD clips as FLAC for the aggregate tests, and seeding them as pending clips.

FSDD mapping: digit = exercise, speaker = learner. FSDD has six speakers, so a demo-policy
bucket (k = 5) is filled by five of them.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from core.db import Database
from core.storage import BlobStore
from tests.pending import seed_pending_clip

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


@dataclass(frozen=True)
class FlacClip:
    name: str
    data: bytes
    duration_s: float
    sample_rate: int
    loudness_dbfs: float

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def to_flac(path: Path) -> FlacClip:
    """The recording at ``path`` as a 16-bit FLAC clip, with its duration and loudness."""
    samples, rate = sf.read(path, dtype="float32", always_2d=False)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) or 1e-9
    return FlacClip(
        name=path.name,
        data=buffer.getvalue(),
        duration_s=len(samples) / rate,
        sample_rate=int(rate),
        loudness_dbfs=20 * float(np.log10(rms)),
    )


ClipSource = Callable[[int, str, int], FlacClip]
# ``seed(database, store, digit=3, speakers=5)``: the fixture of that name.
Seed = Callable[..., list[FlacClip]]


def seed_clip(
    database: Database,
    store: BlobStore,
    *,
    exercise_id: str,
    learner_id: str,
    clip: FlacClip,
    max_clips_per_contributor: int = 1,
) -> str:
    """What ingest does after sanitizing: seal and store the object, record its pending row."""
    return seed_pending_clip(
        database,
        store,
        exercise_id=exercise_id,
        learner_id=learner_id,
        flac=clip.data,
        duration_s=clip.duration_s,
        sample_rate=clip.sample_rate,
        loudness_dbfs=clip.loudness_dbfs,
        max_clips_per_contributor=max_clips_per_contributor,
    )
