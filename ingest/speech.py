"""Speech required: a clip without voice activity is refused before anything is stored.

Upholds P6: a batch is released once k distinct contributors are in it, so every accepted clip
must carry someone speaking. Otherwise k−1 accounts uploading silence, hum or noise could pad
a bucket to the threshold and single out the one real voice in it.

A clip counts as speech when, in 30 ms frames of an 8 kHz copy normalized to a fixed level,

- enough frames are *voiced*: WebRTC's detector calls them speech, they are within 40 dB of the
  loudest frame and their spectrum is not flat like noise (spectral flatness below 0.3);
- voiced frames are a real share of the active ones (noise yields only a stray few); and
- the spectrum moves between voiced frames (median spectral flux at least 0.1), as articulation
  does and a steady tone, chord, hum or buzz does not.

The clip is judged a second at a time, in order: once what has been heard holds at least
half a second of voiced frames and passes all three tests, the rest is not analysed (a clip
that begins with speech is speech whatever follows); otherwise the whole clip is judged. The
level, gain and active frames are always the whole clip's, so a frame is judged the same
either way.

All of the Free Spoken Digit Dataset passes (the tests read every file); the figures above
leave room on both sides of the measured extremes (voiced share ≥ 0.18 and flux ≥ 0.12 on
FSDD; ≤ 0.05 and ≤ 0.07 on noise and steady tones).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.fft
import soxr
import webrtcvad

from core.errors import NoSpeech

ANALYSIS_RATE = 8000
FRAME = 240  # 30 ms at 8 kHz, a frame length WebRTC's detector accepts
FFT_SIZE = 256
VAD_AGGRESSIVENESS = 2
PEAK_FRAME_RMS = 0.1  # frames are scaled so the loudest sits at -20 dBFS ...
MAX_GAIN = 100.0  # ... by at most +40 dB, so a near-silent clip stays near-silent
ACTIVE_RANGE_DB = 40.0
NOISE_FLATNESS = 0.3
MIN_VOICED_SHARE = 0.15
MIN_SPECTRAL_FLUX = 0.1
CHUNK_FRAMES = 33  # ~1 s: after each, the check may stop with enough evidence ...
EVIDENCE_FRAMES = 17  # ... of ~0.5 s of voiced frames or more
# Flatness is measured over 200–3800 Hz, where speech has its formants.
_WINDOW = np.hanning(FRAME).astype(np.float32)
_BAND = slice(round(200 * FFT_SIZE / ANALYSIS_RATE), round(3800 * FFT_SIZE / ANALYSIS_RATE))


def require_speech(mono: np.ndarray, sample_rate: int, *, min_speech_s: float) -> None:
    """Raise NoSpeech unless ``mono`` (float samples in [-1, 1]) holds voice activity."""
    if not has_speech(mono, sample_rate, min_speech_s=min_speech_s):
        raise NoSpeech("no voice activity was found in the clip")


@dataclass(frozen=True)
class SpeechEvidence:
    """What the check measured over the clip's first frames (all of them once ``complete``):
    voiced and active frame counts, median spectral flux of the voiced frames."""

    voiced_frames: int
    active_frames: int
    median_flux: float
    complete: bool = True


def has_speech(mono: np.ndarray, sample_rate: int, *, min_speech_s: float) -> bool:
    """Whether the clip holds speech; it stops early, after a second of audio or more, once
    what it has heard already holds at least ``EVIDENCE_FRAMES`` voiced frames and passes."""
    needed = max(1, round(min_speech_s * ANALYSIS_RATE / FRAME))
    for evidence in _evidence_so_far(mono, sample_rate):
        enough = evidence.voiced_frames >= max(needed, EVIDENCE_FRAMES)
        if (enough or evidence.complete) and _holds_speech(evidence, needed):
            return True
    return False


def speech_evidence(mono: np.ndarray, sample_rate: int) -> SpeechEvidence:
    """The evidence of the whole clip."""
    *_, whole = _evidence_so_far(mono, sample_rate)
    return whole


def _holds_speech(evidence: SpeechEvidence, needed: int) -> bool:
    return (
        evidence.voiced_frames >= needed
        and evidence.voiced_frames >= MIN_VOICED_SHARE * evidence.active_frames
        and evidence.median_flux >= MIN_SPECTRAL_FLUX
    )


def _evidence_so_far(mono: np.ndarray, sample_rate: int) -> Iterator[SpeechEvidence]:
    """Evidence of the first second, the first two, … and last of the whole clip.

    Level, gain and the active frames are the whole clip's, and WebRTC's detector hears the
    frames in order, so every frame is judged as it would be in one pass over the clip.
    """
    frames = _frames(mono, sample_rate)
    level = np.sqrt(np.einsum("ij,ij->i", frames, frames) / FRAME)
    loudest = float(level.max()) if len(frames) else 0.0
    if len(frames) < 2 or loudest <= 0.0:
        yield SpeechEvidence(0, 0, 0.0)
        return
    gain = np.float32(min(MAX_GAIN, PEAK_FRAME_RMS / loudest))
    active = level > loudest * 10.0 ** (-ACTIVE_RANGE_DB / 20.0)
    vad = webrtcvad.Vad(VAD_AGGRESSIVENESS)
    fluxes: list[np.ndarray] = []
    voiced_frames = 0
    previous: np.ndarray | None = None  # the spectrum of the frame before the chunk
    for start in range(0, len(frames), CHUNK_FRAMES):
        chunk = frames[start : start + CHUNK_FRAMES] * gain
        end = start + len(chunk)
        spectrum = np.abs(scipy.fft.rfft(chunk * _WINDOW, FFT_SIZE, axis=1))
        # WebRTC's detector is the dearest step: it only hears frames that could be voiced.
        voiced = active[start:end] & (_flatness(spectrum) < NOISE_FLATNESS)
        voiced[voiced] = _webrtc_speech(vad, chunk[voiced])
        if voiced.any():
            fluxes.append(_spectral_flux(spectrum, previous)[voiced])
            voiced_frames += int(voiced.sum())
        previous = spectrum[-1]
        yield SpeechEvidence(
            voiced_frames,
            int(active[:end].sum()),
            float(np.median(np.concatenate(fluxes))) if fluxes else 0.0,
            complete=end == len(frames),
        )


def _frames(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """30 ms frames of an 8 kHz copy (single precision; a view where no resampling is needed)."""
    samples = np.ascontiguousarray(mono, dtype=np.float32)
    if sample_rate != ANALYSIS_RATE:
        samples = soxr.resample(samples, sample_rate, ANALYSIS_RATE, quality="MQ")
    count = len(samples) // FRAME
    return samples[: count * FRAME].reshape(count, FRAME)


def _webrtc_speech(vad: webrtcvad.Vad, frames: np.ndarray) -> np.ndarray:
    pcm = np.rint(np.clip(frames, -1.0, 1.0) * 32767.0).astype("<i2")
    return np.fromiter(
        (vad.is_speech(frame.tobytes(), ANALYSIS_RATE) for frame in pcm),
        dtype=bool,
        count=len(pcm),
    )


def _flatness(spectrum: np.ndarray) -> np.ndarray:
    """Geometric over arithmetic mean of the band's power: near 0 for tones, ~0.5 for noise."""
    power = np.square(spectrum[:, _BAND]) + np.float32(1e-12)
    return np.asarray(np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1))


def _spectral_flux(spectrum: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """How much of each frame's spectral shape differs from the frame before (0 to 1); the
    frame before the first is ``previous`` (0 for the clip's very first frame)."""
    if previous is not None:
        spectrum = np.vstack([previous, spectrum])
    shape = spectrum / (spectrum.sum(axis=1, keepdims=True) + 1e-12)
    change = 0.5 * np.abs(np.diff(shape, axis=0)).sum(axis=1)
    return change if previous is not None else np.concatenate([[0.0], change])
