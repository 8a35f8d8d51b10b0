"""Recording prints (P6: k distinct recordings): a copy of a recording is recognised however it
was re-encoded, resampled, noised, made louder or quieter or shifted, and different recordings,
even of the same digit, are not taken for each other.

Every copy is made here from the real FSDD recordings in ``tests/data/fsdd`` and goes through
what the service does to an upload: resampled to its canonical rate and kept as 16-bit samples.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache
from itertools import combinations

import numpy as np
import pytest
import soundfile as sf
import soxr

from ingest.fingerprint import (
    PRINT_BYTES,
    PRINT_SHAPE,
    SAME_RECORDING_SCORE,
    is_duplicate,
    print_from_bytes,
    print_to_bytes,
    recording_print,
    similarity_scores,
)
from tests.datasets import FSDD_FIXTURES, fixture_clip

CANONICAL_RATE = 16000
FSDD_RATE = 8000
CLIPS = tuple(sorted(path.name for path in FSDD_FIXTURES.glob("*.wav")))
Upload = tuple[np.ndarray, int]
Copy = Callable[[np.ndarray, np.random.Generator], Upload]


@cache
def fsdd_samples(name: str) -> np.ndarray:
    samples: np.ndarray
    samples, rate = sf.read(fixture_clip(name), dtype="float32")
    assert rate == FSDD_RATE
    return samples


def canonical(upload: Upload) -> np.ndarray:
    """What the service keeps of an upload: resampled to its rate, as 16-bit samples."""
    samples, rate = upload
    if rate != CANONICAL_RATE:
        samples = soxr.resample(samples, rate, CANONICAL_RATE)
    kept: np.ndarray = (np.rint(np.clip(samples, -1.0, 1.0) * 32767) / 32767).astype(np.float32)
    return kept


@cache
def original_print(name: str) -> np.ndarray:
    return recording_print(canonical((fsdd_samples(name), FSDD_RATE)), CANONICAL_RATE)


def encoded(container: str, subtype: str, rate: int = FSDD_RATE) -> Copy:
    def make(samples: np.ndarray, _rng: np.random.Generator) -> Upload:
        if rate != FSDD_RATE:
            samples = soxr.resample(samples, FSDD_RATE, rate)
        buffer = io.BytesIO()
        sf.write(buffer, samples, rate, format=container, subtype=subtype)
        decoded, decoded_rate = sf.read(io.BytesIO(buffer.getvalue()), dtype="float32")
        return decoded, decoded_rate

    return make


def peak_normalized_8_bit(samples: np.ndarray, rng: np.random.Generator) -> Upload:
    # 8 bits leave a clip peaking at 3 % of full scale (two of these) mostly noise: an upload
    # in 8 bits is first brought to full scale, as any recorder or editor does.
    louder = samples * (0.9 / float(np.max(np.abs(samples))))
    return encoded("WAV", "PCM_U8")(louder, rng)


def resampled(rate: int) -> Copy:
    def make(samples: np.ndarray, _rng: np.random.Generator) -> Upload:
        return soxr.resample(soxr.resample(samples, FSDD_RATE, 16000), 16000, rate), rate

    return make


def noised(snr_db: float) -> Copy:
    def make(samples: np.ndarray, rng: np.random.Generator) -> Upload:
        power = float(np.mean(np.square(samples, dtype=np.float64)))
        noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(samples))
        return (samples + noise).astype(np.float32), FSDD_RATE

    return make


def gained(gain_db: float) -> Copy:
    def make(samples: np.ndarray, _rng: np.random.Generator) -> Upload:
        return np.clip(samples * 10 ** (gain_db / 20), -1.0, 1.0), FSDD_RATE

    return make


def silence_added(samples: np.ndarray, rng: np.random.Generator) -> Upload:
    lead, trail = (int(rng.uniform(0.005, 0.3) * FSDD_RATE) for _ in range(2))
    return np.pad(samples, (lead, trail)), FSDD_RATE


def edges_cut(samples: np.ndarray, rng: np.random.Generator) -> Upload:
    lead, trail = (int(rng.uniform(0.002, 0.01) * FSDD_RATE) for _ in range(2))
    return samples[lead : len(samples) - trail], FSDD_RATE


def codec_delay(samples: np.ndarray, rng: np.random.Generator) -> Upload:
    return np.pad(samples, (int(rng.integers(100, 600)), 0)), FSDD_RATE


def all_at_once(samples: np.ndarray, rng: np.random.Generator) -> Upload:
    quieter, _ = gained(-6.0)(samples, rng)
    noisy, _ = noised(30.0)(quieter, rng)
    with_silence, _ = silence_added(noisy, rng)
    return encoded("OGG", "VORBIS", 44100)(with_silence, rng)


COPIES: dict[str, Copy] = {
    "ogg-vorbis": encoded("OGG", "VORBIS"),
    "mp3": encoded("MP3", "MPEG_LAYER_III"),
    "mp3-44k": encoded("MP3", "MPEG_LAYER_III", 44100),
    "mu-law": encoded("WAV", "ULAW"),
    "8-bit": peak_normalized_8_bit,
    "via-8k": resampled(8000),
    "11k": resampled(11025),
    "22k": resampled(22050),
    "44k": resampled(44100),
    "noise-30db": noised(30.0),
    "noise-20db": noised(20.0),
    "gain+6db": gained(6.0),
    "gain-6db": gained(-6.0),
    "silence-added": silence_added,
    "edges-cut": edges_cut,
    "codec-delay": codec_delay,
    "all-at-once": all_at_once,
}


def writable(kind: str) -> bool:
    formats = sf.available_formats()
    return kind not in {"mp3", "mp3-44k"} or "MP3" in formats


@pytest.mark.parametrize("kind", list(COPIES))
def test_a_copy_of_every_recording_is_recognised(kind: str) -> None:
    if not writable(kind):
        pytest.skip("this libsndfile cannot write MP3")
    for index, name in enumerate(CLIPS):
        copy = COPIES[kind](fsdd_samples(name), np.random.default_rng(index))
        copy_print = recording_print(canonical(copy), CANONICAL_RATE)
        score = float(similarity_scores(copy_print, original_print(name)[None])[0])
        assert score >= SAME_RECORDING_SCORE, f"{kind} copy of {name} scored {score:.3f}"
        assert is_duplicate(copy_print, np.stack([original_print(n) for n in CLIPS]))


def test_different_recordings_are_not_taken_for_each_other() -> None:
    # Among the fixtures: the same digit by different speakers (0, 5, 7) and different digits
    # by the same speaker.
    prints = np.stack([original_print(name) for name in CLIPS])
    for (a, name_a), (b, name_b) in combinations(enumerate(CLIPS), 2):
        score = float(similarity_scores(prints[a], prints[b : b + 1])[0])
        assert score < SAME_RECORDING_SCORE, f"{name_a} and {name_b} scored {score:.3f}"
    for index in range(len(CLIPS)):
        others = np.delete(prints, index, axis=0)
        assert not is_duplicate(prints[index], others)


def test_the_word_played_slower_and_lower_is_not_a_copy() -> None:
    # Not a transformation the print has to survive: speech 12 % slower and lower, as a
    # different delivery of the same word, moves every harmonic.
    samples = fsdd_samples("7_jackson_32.wav")
    slower = soxr.resample(samples, FSDD_RATE, round(FSDD_RATE * 1.12))
    slower_print = recording_print(canonical((slower, FSDD_RATE)), CANONICAL_RATE)
    assert not is_duplicate(slower_print, original_print("7_jackson_32.wav")[None])


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
def test_the_print_hardly_depends_on_the_canonical_rate(rate: int) -> None:
    samples = fsdd_samples("5_lucas_0.wav")
    at_rate = soxr.resample(samples, FSDD_RATE, rate) if rate != FSDD_RATE else samples
    score = similarity_scores(recording_print(at_rate, rate), original_print("5_lucas_0.wav")[None])
    assert score[0] >= 0.98


def test_a_print_is_centred_and_of_unit_norm() -> None:
    fingerprint = original_print("1_jackson_5.wav")
    assert fingerprint.shape == PRINT_SHAPE
    assert fingerprint.dtype == np.float32
    assert abs(float(fingerprint.mean())) < 1e-6
    assert float(np.linalg.norm(fingerprint)) == pytest.approx(1.0, abs=1e-5)
    assert float(similarity_scores(fingerprint, fingerprint[None])[0]) == pytest.approx(1.0)


def test_digital_silence_and_odd_input_yield_a_print() -> None:
    silent = recording_print(np.zeros(16000, dtype=np.float32), CANONICAL_RATE)
    assert silent.shape == PRINT_SHAPE
    assert not silent.any()
    assert not is_duplicate(silent, silent[None])
    assert recording_print(np.zeros(0, dtype=np.float32), CANONICAL_RATE).shape == PRINT_SHAPE
    click = np.zeros(100, dtype=np.float32)
    click[50] = 1.0
    assert recording_print(click, CANONICAL_RATE).shape == PRINT_SHAPE
    with_nan = canonical((fsdd_samples("0_george_1.wav"), FSDD_RATE))
    with_nan[100] = np.nan
    assert np.isfinite(recording_print(with_nan, CANONICAL_RATE)).all()


def test_stereo_and_too_low_a_rate_are_refused() -> None:
    with pytest.raises(ValueError, match="mono"):
        recording_print(np.zeros((100, 2), dtype=np.float32), CANONICAL_RATE)
    with pytest.raises(ValueError, match="below"):
        recording_print(np.zeros(100, dtype=np.float32), 4000)


def test_a_stored_print_is_compact_and_scores_as_the_original() -> None:
    fingerprint = original_print("8_lucas_0.wav")
    data = print_to_bytes(fingerprint)
    assert len(data) == PRINT_BYTES <= 1024
    restored = print_from_bytes(data)
    assert restored.shape == PRINT_SHAPE
    assert restored.dtype == np.float32
    assert float(similarity_scores(fingerprint, restored[None])[0]) >= 0.999
    others = np.stack([print_from_bytes(print_to_bytes(original_print(n))) for n in CLIPS])
    direct = np.stack([original_print(n) for n in CLIPS])
    np.testing.assert_allclose(
        similarity_scores(fingerprint, others), similarity_scores(fingerprint, direct), atol=3e-3
    )


def test_a_damaged_or_foreign_stored_print_is_refused() -> None:
    data = print_to_bytes(original_print("8_lucas_0.wav"))
    with pytest.raises(ValueError, match="bytes"):
        print_from_bytes(data[:-1])
    with pytest.raises(ValueError, match="version"):
        print_from_bytes(bytes([data[0] + 1]) + data[1:])
    with pytest.raises(ValueError, match="shape"):
        print_to_bytes(np.zeros((2, 3), dtype=np.float32))


def test_scores_are_correlations_in_range() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(50, *PRINT_SHAPE)).astype(np.float32)
    noise -= noise.mean(axis=(1, 2), keepdims=True)
    noise /= np.linalg.norm(noise.reshape(50, -1), axis=1)[:, None, None]
    scores = similarity_scores(noise[0], noise)
    assert scores.shape == (50,)
    assert scores.dtype == np.float32
    assert float(scores[0]) == pytest.approx(1.0, abs=1e-5)
    assert float(similarity_scores(noise[0], -noise[:1])[0]) == pytest.approx(-1.0, abs=1e-5)
    assert np.all((scores >= -1.0) & (scores <= 1.0))
    expected = noise.reshape(50, -1) @ noise[0].ravel()
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        similarity_scores(noise[0], noise[0])


def test_an_empty_bucket_holds_no_duplicate() -> None:
    empty = np.zeros((0, *PRINT_SHAPE), dtype=np.float32)
    assert similarity_scores(original_print("0_george_1.wav"), empty).shape == (0,)
    assert not is_duplicate(original_print("0_george_1.wav"), empty)
