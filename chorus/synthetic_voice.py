"""A synthesized voice for the demo and the tests when no recording is at hand.

A few syllables, each a glottal-pulse train with a falling, jittered pitch passed through the
formant resonances of a vowel and shaped by a syllable envelope, so the upload path's speech
check (``ingest.speech``) hears a voice, as it would not in a steady tone.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

# First three formants (Hz) of a few vowels: /a/, /i/, /u/, /e/, /o/.
VOWELS = (
    (730, 1090, 2440),
    (270, 2290, 3010),
    (300, 870, 2240),
    (530, 1840, 2480),
    (570, 840, 2410),
)
FORMANT_BANDWIDTH_HZ = 90.0


def voiced_samples(
    *, seed: int, seconds: float = 1.0, sample_rate: int = 16000, pitch_hz: float = 120.0
) -> np.ndarray:
    """``seconds`` of float32 samples in [-0.5, 0.5]: syllables of about 0.25 s with short gaps."""
    rng = np.random.default_rng(seed)
    total = int(seconds * sample_rate)
    signal = np.zeros(total)
    syllables = max(2, round(seconds / 0.3))
    span = total // syllables
    for index in range(syllables):
        length = int(span * 0.8)
        start = index * span + (span - length) // 2
        vowel = VOWELS[int(rng.integers(len(VOWELS)))]
        signal[start : start + length] = _syllable(length, sample_rate, pitch_hz, vowel, rng)
    peak = float(np.max(np.abs(signal))) or 1.0
    return (0.5 * signal / peak).astype(np.float32)


def voiced_wav(
    *, seed: int, seconds: float = 1.0, sample_rate: int = 16000, pitch_hz: float = 120.0
) -> bytes:
    """:func:`voiced_samples` as a 16-bit WAV file."""
    samples = voiced_samples(seed=seed, seconds=seconds, sample_rate=sample_rate, pitch_hz=pitch_hz)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _syllable(
    length: int,
    sample_rate: int,
    pitch_hz: float,
    vowel: tuple[int, int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    t = np.arange(length) / sample_rate
    # Pitch falls by a fifth over the syllable, with a little vibrato and jitter.
    contour = pitch_hz * (1.0 + 0.1 * rng.standard_normal()) * (1.0 - 0.3 * t / t[-1])
    contour *= 1.0 + 0.03 * np.sin(2 * np.pi * 5.0 * t) + 0.01 * rng.standard_normal(length)
    phase = np.cumsum(contour) / sample_rate
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal cycle
    source = lfilter([1.0], [1.0, -0.95], pulses)  # a glottal roll-off
    # The vowel glides part-way toward a neutral one, as in a diphthong.
    sound = np.zeros(length)
    half = length // 2
    for part, (begin, end) in enumerate(((0, half), (half, length))):
        formants = [f * (1.0 - 0.15 * part) + 500.0 * 0.15 * part for f in vowel]
        sound[begin:end] = _resonate(source[begin:end], formants, sample_rate)
    envelope = np.clip(np.sin(np.pi * t / t[-1]), 0.0, 1.0) ** 0.7
    breath = 0.02 * rng.standard_normal(length)
    return np.asarray(envelope * (sound / (np.max(np.abs(sound)) or 1.0) + breath))


def _resonate(source: np.ndarray, formants: list[float], sample_rate: int) -> np.ndarray:
    out = np.zeros_like(source)
    radius = np.exp(-np.pi * FORMANT_BANDWIDTH_HZ / sample_rate)
    for rank, frequency in enumerate(formants):
        if frequency >= sample_rate / 2:
            continue
        theta = 2 * np.pi * frequency / sample_rate
        out += lfilter([1.0 - radius], [1.0, -2 * radius * np.cos(theta), radius**2], source) / (
            1 + rank
        )
    return out
