"""Calibrate ``ingest.fingerprint.SAME_RECORDING_SCORE`` on the Free Spoken Digit Dataset.

Every FSDD recording goes through the service's path: the upload is decoded and resampled to
the canonical rate (16 kHz by default) as 16-bit samples, and the print is taken of that. For
each kind of copy an attacker could upload (re-encoded, resampled, noised, louder or quieter,
with silence or codec delay) the script prints the distribution of the scores between a
recording and its copy (minimum, 1st percentile, median); for genuinely different recordings,
different takes of the same digit by the same speaker (the hardest) and the same digit by
different speakers, it prints the maximum, 99.9th percentile and median. Then the threshold in
force, the miss rate (copies scored below it) and the false-alarm rate (different recordings
scored at or above it), and the same at a few other thresholds.

Run from the repository root: ``.venv/bin/python benchmarks/fingerprint_calibration.py``
(``--quick`` takes only the first five takes of each speaker and digit; ``--copies-of-every 5``
makes the copies of every fifth recording only, a fifth of the time). The recordings are the
ones ``core.sample_data`` finds (``CHORUS_DATA_DIR``, ``../shared/data``, else the fixtures).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO_ROOT = Path(__file__).resolve().parents[1]
# benchmarks/ingest.py would shadow the ingest package: import from the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO_ROOT))

from ingest.fingerprint import (  # noqa: E402
    PRINT_SHAPE,
    SAME_RECORDING_SCORE,
    print_from_bytes,
    print_to_bytes,
    recording_print,
    similarity_scores,
)

FSDD_RATE = 8000
Upload = tuple[np.ndarray, int]
Transformation = Callable[[np.ndarray, np.random.Generator], Upload]


@dataclass(frozen=True)
class Recording:
    digit: int
    speaker: str
    take: int
    samples: np.ndarray  # float32 at FSDD_RATE


def fsdd_folder() -> Path:
    """The FSDD recordings ``core.sample_data`` finds (the full set or the fixtures)."""
    from core.sample_data import find_sample_data

    found = find_sample_data()
    if found is None:
        raise SystemExit("no FSDD recordings: set CHORUS_DATA_DIR (README: Test data)")
    return found.fsdd


def load_fsdd(folder: Path, max_takes: int | None) -> list[Recording]:
    recordings = []
    for path in sorted(folder.glob("*.wav")):
        digit, speaker, take = path.stem.split("_")
        if max_takes is not None and int(take) >= max_takes:
            continue
        samples, rate = sf.read(path, dtype="float32")
        if rate != FSDD_RATE or samples.ndim != 1:
            raise ValueError(f"{path} is not mono at {FSDD_RATE} Hz")
        recordings.append(Recording(int(digit), speaker, int(take), samples))
    if not recordings:
        raise SystemExit(f"no FSDD recordings under {folder / 'fsdd' / 'recordings'}")
    return recordings


def canonical(upload: Upload, canonical_rate: int) -> np.ndarray:
    """What the service keeps of an upload: resampled to its rate, 16-bit, in [-1, 1]."""
    samples, rate = upload
    if rate != canonical_rate:
        samples = soxr.resample(samples, rate, canonical_rate, quality="HQ")
    pcm16 = np.rint(np.clip(samples, -1.0, 1.0) * 32767.0)
    return (pcm16 / 32767.0).astype(np.float32)


# --- the copies an attacker could upload ---------------------------------------------------


def encoded(container: str, subtype: str, rate: int = FSDD_RATE) -> Transformation:
    def transform(samples: np.ndarray, _rng: np.random.Generator) -> Upload:
        if rate != FSDD_RATE:
            samples = soxr.resample(samples, FSDD_RATE, rate)
        buffer = io.BytesIO()
        sf.write(buffer, np.clip(samples, -1.0, 1.0), rate, format=container, subtype=subtype)
        decoded, decoded_rate = sf.read(io.BytesIO(buffer.getvalue()), dtype="float32")
        return decoded, decoded_rate

    return transform


def resampled(rate: int) -> Transformation:
    def transform(samples: np.ndarray, _rng: np.random.Generator) -> Upload:
        # The original is 8 kHz: going to 16 kHz first makes "via 8 kHz" a real round trip.
        upsampled = soxr.resample(samples, FSDD_RATE, 16000)
        return soxr.resample(upsampled, 16000, rate).astype(np.float32), rate

    return transform


def noised(snr_db: float) -> Transformation:
    def transform(samples: np.ndarray, rng: np.random.Generator) -> Upload:
        signal_power = float(np.mean(np.square(samples, dtype=np.float64)))
        noise = rng.normal(0.0, np.sqrt(signal_power / 10 ** (snr_db / 10)), len(samples))
        return np.clip(samples + noise, -1.0, 1.0).astype(np.float32), FSDD_RATE

    return transform


def gained(gain_db: float) -> Transformation:
    def transform(samples: np.ndarray, _rng: np.random.Generator) -> Upload:
        return np.clip(samples * 10 ** (gain_db / 20), -1.0, 1.0), FSDD_RATE

    return transform


def padded(samples: np.ndarray, rng: np.random.Generator) -> Upload:
    """20–200 ms of silence added at each end (very faint noise, as a real recorder's)."""
    lead, trail = (int(rng.uniform(0.02, 0.2) * FSDD_RATE) for _ in range(2))
    floor = rng.normal(0.0, 1e-4, lead + len(samples) + trail).astype(np.float32)
    floor[lead : lead + len(samples)] += samples
    return floor, FSDD_RATE


def trimmed(samples: np.ndarray, rng: np.random.Generator) -> Upload:
    """2–10 ms cut at each end."""
    lead, trail = (int(rng.uniform(0.002, 0.01) * FSDD_RATE) for _ in range(2))
    return samples[lead : len(samples) - trail], FSDD_RATE


def delayed(samples: np.ndarray, rng: np.random.Generator) -> Upload:
    """A codec delay: 100–600 samples of silence in front."""
    delay = int(rng.integers(100, 600))
    return np.concatenate([np.zeros(delay, dtype=np.float32), samples]), FSDD_RATE


def normalized_8_bit(samples: np.ndarray, rng: np.random.Generator) -> Upload:
    """Peak-normalized to −1 dBFS, then 8-bit PCM (a quiet clip in 8 bits is mostly noise)."""
    peak = max(float(np.max(np.abs(samples))), 1e-6)
    return encoded("WAV", "PCM_U8")(samples * (10 ** (-1 / 20) / peak), rng)


def combined(samples: np.ndarray, rng: np.random.Generator) -> Upload:
    """44.1 kHz, −6 dB, 30 dB SNR noise, silence at both ends, then Ogg Vorbis."""
    quieter, _ = gained(-6.0)(samples, rng)
    noisy, _ = noised(30.0)(quieter, rng)
    with_silence, _ = padded(noisy, rng)
    return encoded("OGG", "VORBIS", 44100)(with_silence, rng)


# Beyond what the print is built for, reported apart: 8 bits leave the quietest FSDD speaker
# (peaks at 2-4 % of full scale) a few quantization steps, and GSM 6.10 resynthesizes the
# voice from a 13 kbit/s model. Both are kept in the table, not in the required miss rate.
HARSH = frozenset({"8-bit PCM", "GSM 6.10"})
TRANSFORMATIONS: dict[str, Transformation] = {
    "Ogg Vorbis": encoded("OGG", "VORBIS"),
    "MP3": encoded("MP3", "MPEG_LAYER_III"),
    "MP3 at 44.1 kHz": encoded("MP3", "MPEG_LAYER_III", 44100),
    "Ogg Opus (48 kHz)": encoded("OGG", "OPUS", 48000),
    "8-bit PCM": encoded("WAV", "PCM_U8"),
    "8-bit PCM, peak-normalized": normalized_8_bit,
    "µ-law": encoded("WAV", "ULAW"),
    "GSM 6.10": encoded("WAV", "GSM610"),
    "via 8 kHz": resampled(8000),
    "11.025 kHz": resampled(11025),
    "22.05 kHz": resampled(22050),
    "44.1 kHz": resampled(44100),
    "noise 30 dB SNR": noised(30.0),
    "noise 20 dB SNR": noised(20.0),
    "gain +6 dB": gained(6.0),
    "gain −6 dB": gained(-6.0),
    "silence added": padded,
    "edges trimmed": trimmed,
    "codec delay": delayed,
    "combined": combined,
}


def slowed(factor: float) -> Transformation:
    def transform(samples: np.ndarray, _rng: np.random.Generator) -> Upload:
        return soxr.resample(samples, FSDD_RATE, round(FSDD_RATE * factor)), FSDD_RATE

    return transform


# Not copies the print is meant to survive, shown for what they are: played a few per cent
# slower (and so lower), the harmonics move, and the print treats it as another recording.
OTHER_CHANGES: dict[str, Transformation] = {
    "1 % slower and lower": slowed(1.01),
    "3 % slower and lower": slowed(1.03),
    "10 % slower and lower": slowed(1.10),
}


def rng_for(recording: Recording, transformation: str) -> np.random.Generator:
    key = f"{recording.digit}/{recording.speaker}/{recording.take}/{transformation}"
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8]))


def stored(fingerprint: np.ndarray) -> np.ndarray:
    """The print as the service keeps it: through its byte form."""
    return print_from_bytes(print_to_bytes(fingerprint))


# --- the figures ---------------------------------------------------------------------------


def copy_scores(
    recordings: list[Recording],
    references: np.ndarray,
    canonical_rate: int,
    transformations: dict[str, Transformation],
) -> dict[str, np.ndarray]:
    scores = {}
    for name, transform in transformations.items():
        values = np.empty(len(recordings), dtype=np.float32)
        for index, recording in enumerate(recordings):
            upload = transform(recording.samples, rng_for(recording, name))
            copy_print = recording_print(canonical(upload, canonical_rate), canonical_rate)
            values[index] = similarity_scores(copy_print, references[index : index + 1])[0]
        scores[name] = values
    return scores


def genuine_pair_scores(
    recordings: list[Recording], references: np.ndarray
) -> dict[str, np.ndarray]:
    matrix = similarity_scores_matrix(references)
    same_take_group: dict[tuple[int, str], list[int]] = {}
    for index, recording in enumerate(recordings):
        same_take_group.setdefault((recording.digit, recording.speaker), []).append(index)
    takes = [
        matrix[a, b] for members in same_take_group.values() for a, b in combinations(members, 2)
    ]
    digits = np.array([r.digit for r in recordings])
    speakers = np.array([r.speaker for r in recordings])
    upper = np.triu(np.ones_like(matrix, dtype=bool), k=1)
    same_digit = (digits[:, None] == digits[None, :]) & upper
    other_speaker = speakers[:, None] != speakers[None, :]
    same_speaker = ~other_speaker & upper
    return {
        "other take, same speaker and digit": np.array(takes, dtype=np.float32),
        "same digit, other speaker": matrix[same_digit & other_speaker],
        "other digit, same speaker": matrix[~same_digit & same_speaker],
        "other digit, other speaker": matrix[upper & other_speaker & ~same_digit],
    }


def similarity_scores_matrix(prints: np.ndarray) -> np.ndarray:
    return np.stack([similarity_scores(query, prints) for query in prints])


def rate_at(scores: np.ndarray, threshold: float, *, copies: bool) -> float:
    return float(np.mean(scores < threshold) if copies else np.mean(scores >= threshold))


def report(copies: dict[str, np.ndarray], genuine: dict[str, np.ndarray], threshold: float) -> None:
    print(f"\nCopies of the same recording ({len(next(iter(copies.values())))} each):")
    print(f"  {'transformation':<38} {'min':>7} {'p1':>7} {'median':>7} {'missed':>8}")
    for name, values in copies.items():
        low, p1, median = np.min(values), np.percentile(values, 1), np.median(values)
        missed = rate_at(values, threshold, copies=True)
        print(f"  {name:<38} {low:7.3f} {p1:7.3f} {median:7.3f} {missed:8.2%}")
    print("\nDifferent recordings:")
    print(f"  {'pairs':<38} {'count':>7} {'max':>7} {'p99.9':>7} {'median':>7} {'flagged':>9}")
    for name, values in genuine.items():
        high, p999, median = np.max(values), np.percentile(values, 99.9), np.median(values)
        flagged = rate_at(values, threshold, copies=False)
        print(f"  {name:<38} {len(values):7d} {high:7.3f} {p999:7.3f} {median:7.3f} {flagged:9.4%}")
    required = np.concatenate([v for name, v in copies.items() if name not in HARSH])
    all_copies = np.concatenate(list(copies.values()))
    all_genuine = np.concatenate(list(genuine.values()))
    hardest = genuine["other take, same speaker and digit"]
    print(f"\nThreshold in force: SAME_RECORDING_SCORE = {threshold}")
    print(
        f"  {'threshold':>9} {'miss (required)':>16} {'miss (all copies)':>18}"
        f" {'FA (other takes)':>17} {'FA (all pairs)':>15}"
    )
    candidates = (0.8, 0.85, 0.875, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95)
    for candidate in sorted({threshold, *candidates}):
        marker = "  <- in force" if candidate == threshold else ""
        print(
            f"  {candidate:9.3f} {rate_at(required, candidate, copies=True):16.3%}"
            f" {rate_at(all_copies, candidate, copies=True):18.3%}"
            f" {rate_at(hardest, candidate, copies=False):17.4%}"
            f" {rate_at(all_genuine, candidate, copies=False):15.5%}{marker}"
        )
    print(
        f"\nLowest copy score {np.min(required):.3f} (required copies; {np.min(all_copies):.3f}"
        f" with 8-bit PCM and GSM 6.10); highest different-recording score "
        f"{np.max(all_genuine):.3f} ({np.max(hardest):.3f} other takes)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="five takes per speaker and digit")
    parser.add_argument("--rate", type=int, default=16000, help="the service's canonical rate")
    parser.add_argument(
        "--copies-of-every",
        type=int,
        default=1,
        metavar="N",
        help="make the copies of every Nth recording only (all recordings still form pairs)",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    recordings = load_fsdd(fsdd_folder(), 5 if args.quick else None)
    print(f"{len(recordings)} FSDD recordings, canonical rate {args.rate} Hz, print {PRINT_SHAPE}")
    print_started = time.perf_counter()
    references = np.stack(
        [
            stored(recording_print(canonical((r.samples, FSDD_RATE), args.rate), args.rate))
            for r in recordings
        ]
    )
    per_print_ms = (time.perf_counter() - print_started) / len(recordings) * 1000
    bucket = np.resize(references, (10_000, *PRINT_SHAPE))
    search_ms = []
    for _ in range(50):
        search_started = time.perf_counter()
        similarity_scores(references[0], bucket)
        search_ms.append((time.perf_counter() - search_started) * 1000)
    print(
        f"{per_print_ms:.2f} ms a print; one against 10,000 prints: "
        f"best {min(search_ms):.2f} ms, median {np.median(search_ms):.2f} ms of 50"
    )

    copied = slice(None, None, args.copies_of_every)
    print(f"copies made of {len(recordings[copied])} recordings")
    copies = copy_scores(recordings[copied], references[copied], args.rate, TRANSFORMATIONS)
    genuine = genuine_pair_scores(recordings, references)
    report(copies, genuine, SAME_RECORDING_SCORE)
    print("\nNot meant to match (a new delivery of the word moves the harmonics):")
    others = copy_scores(recordings[copied], references[copied], args.rate, OTHER_CHANGES)
    for name, values in others.items():
        matched = rate_at(values, SAME_RECORDING_SCORE, copies=False)
        print(f"  {name:<38} median {np.median(values):6.3f}, matched {matched:7.2%}")
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
