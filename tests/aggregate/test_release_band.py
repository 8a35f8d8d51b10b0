"""One band per release (P4): the rate a phone recorded at must not be readable off a clip.

A bucket mixing 8 kHz, 16 kHz and 44.1 kHz recordings is released with every clip low-passed
below the narrowest band among them, so the spectrum's cutoff, which otherwise classes each
clip by its device, is the same for all; the card and manifest say which band the release has.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from aggregate.dataset import PASS_SHARE
from aggregate.jobs import run_release_cycle
from core.db import Database
from core.storage import BlobStore
from ingest.audio import sanitize_audio
from ingest.service import audio_limits
from policies.policy import Policy
from tests.aggregate.census import released_clip_bytes
from tests.keys import keys_for
from tests.pending import seed_sanitized

WAVS = ("0_george_1.wav", "1_jackson_5.wav", "5_lucas_0.wav", "0_nicolas_3.wav", "5_theo_7.wav")
RATES = (8000, 16000, 44100, 16000, 44100)


def _recorded_at(wav: Path, rate: int, seed: int) -> bytes:
    """An FSDD clip as a device recording at ``rate`` would send it: resampled, with the
    device's own wideband noise up to its Nyquist frequency."""
    samples, source_rate = sf.read(wav, dtype="float32")
    if rate != source_rate:
        samples = soxr.resample(samples, source_rate, rate)
    noise = np.random.default_rng(seed).normal(0.0, 0.01, len(samples)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, samples + noise, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _cutoff_hz(flac: bytes) -> float:
    """The highest frequency whose level is within 50 dB of the clip's strongest band."""
    samples, rate = sf.read(io.BytesIO(flac), dtype="float32")
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    bands = np.array_split(spectrum, 200)
    levels = 10 * np.log10(np.array([band.mean() for band in bands]) + 1e-20)
    loud = np.nonzero(levels > levels.max() - 50)[0]
    return float((loud[-1] + 1) * (rate / 2) / len(bands))


def test_a_mixed_bucket_is_released_at_its_narrowest_band(
    database: Database, store: BlobStore, policy: Policy, fsdd_dir: Path
) -> None:
    sanitized = []
    for index, (name, rate) in enumerate(zip(WAVS, RATES, strict=True)):
        clip = sanitize_audio(_recorded_at(fsdd_dir / name, rate, index), audio_limits(policy))
        assert clip.source_sample_rate == rate
        sanitized.append(clip)
        seed_sanitized(
            database, store, exercise_id="digit-2", learner_id=f"learner-{index}", clip=clip
        )
    # Before: the cutoff tells 8 kHz recordings from the others.
    before = [_cutoff_hz(clip.flac) for clip in sanitized]
    assert before[0] < 4100 < min(before[1:])

    report = run_release_cycle(
        database=database, store=store, keys=keys_for(database), policy=policy, interval_s=1
    )
    (released,) = report.released
    prefix = f"releases/{released.release_id}/"
    manifest = json.loads(store.get(prefix + "manifest.json"))
    band = round(PASS_SHARE * 4000)
    assert manifest["bandwidth_hz"] == band
    assert f"below {band} Hz" in store.get(prefix + "README.md").decode()

    after = [_cutoff_hz(data) for data in released_clip_bytes(store, prefix)]
    assert len(after) == len(WAVS)
    # Every clip now ends where the release's filter ends: no clip stands out.
    assert max(after) - min(after) < 250, after
    assert max(after) < 4000


def test_a_bucket_of_one_band_is_released_as_sanitized(
    database: Database, store: BlobStore, policy: Policy, fsdd_dir: Path
) -> None:
    flacs = []
    for index, name in enumerate(WAVS):
        clip = sanitize_audio((fsdd_dir / name).read_bytes(), audio_limits(policy))
        flacs.append(clip.flac)
        seed_sanitized(
            database, store, exercise_id="digit-2", learner_id=f"learner-{index}", clip=clip
        )
    report = run_release_cycle(
        database=database, store=store, keys=keys_for(database), policy=policy, interval_s=1
    )
    (released,) = report.released
    prefix = f"releases/{released.release_id}/"
    assert sorted(released_clip_bytes(store, prefix)) == sorted(flacs)
    assert json.loads(store.get(prefix + "manifest.json"))["bandwidth_hz"] is None
