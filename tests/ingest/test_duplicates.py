"""k distinct recordings (P6): a bucket refuses a recording it already holds.

Four accounts uploading one recording, and a victim uploading theirs, would otherwise make a
"five-contributor" release whose only unique clip is the victim's. The same recording is
refused whether it comes back byte for byte, in another container or codec, resampled, or
lightly noised; another speaker saying the same word is a recording of its own.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from tests.ingest.uploads import CLIP, Mint, Stored, Upload

OTHER_TAKE = "7_theo_35.wav"


def _encoded(samples: np.ndarray, rate: int, *, format: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def _variants(wav: Path) -> dict[str, bytes]:
    samples, rate = sf.read(wav, dtype="float32")
    noise = np.random.default_rng(7).normal(0.0, 1.0, len(samples)).astype(np.float32)
    rms = float(np.sqrt(np.mean(samples**2)))
    noised = samples + noise * rms / 10 ** (30 / 20)
    return {
        "the same bytes": wav.read_bytes(),
        "as FLAC": _encoded(samples, rate, format="FLAC", subtype="PCM_16"),
        "as Ogg Vorbis": _encoded(samples, rate, format="OGG", subtype="VORBIS"),
        "resampled to 16 kHz": _encoded(
            soxr.resample(samples, rate, 16000), 16000, format="WAV", subtype="PCM_16"
        ),
        "resampled to 44.1 kHz": _encoded(
            soxr.resample(samples, rate, 44100), 44100, format="WAV", subtype="PCM_16"
        ),
        "with noise at 30 dB SNR": _encoded(noised, rate, format="WAV", subtype="PCM_16"),
        "6 dB quieter": _encoded(samples * 0.5, rate, format="WAV", subtype="PCM_16"),
    }


@pytest.mark.usefixtures("catalog")
def test_the_same_recording_is_refused_however_it_comes_back(
    upload: Upload, mint: Mint, fsdd_dir: Path, stored: Callable[[], Stored]
) -> None:
    original = fsdd_dir / CLIP
    assert upload(mint("victim"), original.read_bytes()).status_code == 201
    for index, (how, audio) in enumerate(_variants(original).items()):
        response = upload(mint(f"sybil-{index}"), audio)
        assert response.status_code == 409, how
        assert response.json()["code"] == "duplicate_recording", how
    assert stored() == Stored(objects=1, rows=1)


@pytest.mark.usefixtures("catalog")
def test_another_speaker_saying_the_same_word_is_a_recording_of_its_own(
    upload: Upload, mint: Mint, fsdd_dir: Path, stored: Callable[[], Stored]
) -> None:
    assert upload(mint("learner-a"), (fsdd_dir / CLIP).read_bytes()).status_code == 201
    assert upload(mint("learner-b"), (fsdd_dir / OTHER_TAKE).read_bytes()).status_code == 201
    assert stored() == Stored(objects=2, rows=2)


@pytest.mark.usefixtures("catalog")
def test_the_same_recording_may_go_to_another_exercise(
    upload: Upload, mint: Mint, fsdd_dir: Path
) -> None:
    audio = (fsdd_dir / CLIP).read_bytes()
    assert upload(mint("learner-a"), audio, {"exercise_id": "digit-7"}).status_code == 201
    assert upload(mint("learner-b"), audio, {"exercise_id": "digit-8"}).status_code == 201
