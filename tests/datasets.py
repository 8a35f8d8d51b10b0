"""The recordings and course prompts tests run on: small fixtures in the repository, full data
beside it when there is some.

The default suite needs nothing outside the repository. ``tests/data/`` holds twelve real FSDD
recordings (two to a speaker) and excerpts of the STAPLE gold files, with their licences
(``tests/data/README.md``). ``build_mini_fsdd`` lays out a miniature FSDD from them: every
``{digit}_{speaker}_{take}.wav`` name for ten takes, the shipped recordings under their own
names, every other name a variant of one of that speaker's recordings (resampled a few per cent
slower and at another gain, with its own faint noise), so each name holds distinct real speech.

Tests that need the whole data sets (all 3,000 recordings, the complete gold files) take the
``full_data`` fixture and carry the ``full_data`` marker: they read what
``core.sample_data.full_sample_data`` finds (``CHORUS_DATA_DIR``, then ``../shared/data`` beside
the repository) and are skipped, saying so, without it.
"""

from __future__ import annotations

import hashlib
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from core.sample_data import full_sample_data

FIXTURES = Path(__file__).resolve().parent / "data"
FSDD_FIXTURES = FIXTURES / "fsdd"
STAPLE_DIR = FIXTURES / "staple"
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
MINI_TAKES = 10
# Variants are only ever made longer, so every name clears the policies' minimum duration.
_SOURCE_MIN_S = 0.45
FULL_DATA_HINT = (
    "set CHORUS_DATA_DIR to a folder holding fsdd/recordings/ and staple/ (README: Test data)"
)


def full_data_dir() -> Path | None:
    """The folder holding both whole data sets, if ``core.sample_data`` finds one."""
    found = full_sample_data()
    return None if found is None else found.root


def fixture_clip(name: str) -> Path:
    """One of the real FSDD recordings shipped in ``tests/data/fsdd``."""
    path = FSDD_FIXTURES / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not among the FSDD fixtures in {FSDD_FIXTURES}")
    return path


@cache
def _sources(speaker: str) -> tuple[np.ndarray, ...]:
    clips = []
    for path in sorted(FSDD_FIXTURES.glob(f"*_{speaker}_*.wav")):
        samples, rate = sf.read(path, dtype="float32")
        if rate == 8000 and len(samples) / rate >= _SOURCE_MIN_S:
            clips.append(samples)
    if not clips:
        raise FileNotFoundError(f"no FSDD fixture of {speaker} lasts {_SOURCE_MIN_S} s")
    return tuple(clips)


def _variant(digit: int, speaker: str, take: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(f"{digit}/{speaker}/{take}".encode()).digest()[:8])
    rng = np.random.default_rng(seed)
    sources = _sources(speaker)
    source = sources[(digit + take) % len(sources)]
    # Resampled to a slightly higher rate and played back at 8 kHz: a little longer and lower.
    stretched: np.ndarray = soxr.resample(source, 8000, 8000 * rng.uniform(1.02, 1.15))
    gain = rng.uniform(0.55, 1.0) / max(float(np.max(np.abs(stretched))), 1e-6) * 0.9
    noise = rng.normal(0.0, 1e-3, len(stretched))
    return np.clip(stretched * gain + noise, -1.0, 1.0).astype(np.float32)


def build_mini_fsdd(folder: Path, *, takes: int = MINI_TAKES) -> Path:
    """A miniature FSDD in ``folder/recordings``: 6 speakers x 10 digits x ``takes``."""
    recordings = folder / "recordings"
    recordings.mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        for speaker in SPEAKERS:
            for take in range(takes):
                name = f"{digit}_{speaker}_{take}.wav"
                if not (FSDD_FIXTURES / name).is_file():
                    sf.write(
                        recordings / name, _variant(digit, speaker, take), 8000, subtype="PCM_16"
                    )
    for shipped in FSDD_FIXTURES.glob("*.wav"):
        shutil.copyfile(shipped, recordings / shipped.name)
    return recordings
