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

All of the Free Spoken Digit Dataset passes (the tests read every file); the figures above
leave room on both sides of the measured extremes (voiced share ≥ 0.18 and flux ≥ 0.12 on
FSDD; ≤ 0.05 and ≤ 0.07 on noise and steady tones).
"""

from __future__ import annotations

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
# Flatness is measured over 200–3800 Hz, where speech has its formants.
_WINDOW = np.hanning(FRAME).astype(np.float32)
_BAND = slice(round(200 * FFT_SIZE / ANALYSIS_RATE), round(3800 * FFT_SIZE / ANALYSIS_RATE))


def require_speech(mono: np.ndarray, sample_rate: int, *, min_speech_s: float) -> None:
    """Raise NoSpeech unless ``mono`` (float samples in [-1, 1]) holds voice activity."""
    if not has_speech(mono, sample_rate, min_speech_s=min_speech_s):
        raise NoSpeech("no voice activity was found in the clip")


@dataclass(frozen=True)
class SpeechEvidence:
    """What the check measured: voiced and active frame counts, median flux of voiced frames."""

    voiced_frames: int
    active_frames: int
    median_flux: float


def has_speech(mono: np.ndarray, sample_rate: int, *, min_speech_s: float) -> bool:
    evidence = speech_evidence(mono, sample_rate)
    needed = max(1, round(min_speech_s * ANALYSIS_RATE / FRAME))
    return (
        evidence.voiced_frames >= needed
        and evidence.voiced_frames >= MIN_VOICED_SHARE * evidence.active_frames
        and evidence.median_flux >= MIN_SPECTRAL_FLUX
    )


def speech_evidence(mono: np.ndarray, sample_rate: int) -> SpeechEvidence:
    frames = _frames(mono, sample_rate)
    if len(frames) < 2:
        return SpeechEvidence(0, 0, 0.0)
    level = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    loudest = float(level.max())
    if loudest <= 0.0:
        return SpeechEvidence(0, 0, 0.0)
    frames *= np.float32(min(MAX_GAIN, PEAK_FRAME_RMS / loudest))
    active = level > loudest * 10.0 ** (-ACTIVE_RANGE_DB / 20.0)
    spectrum = np.abs(scipy.fft.rfft(frames * _WINDOW, FFT_SIZE, axis=1))
    # WebRTC's detector is the dearest step: it only hears frames that could still be voiced.
    voiced = active & (_flatness(spectrum) < NOISE_FLATNESS)
    voiced[voiced] = _webrtc_speech(frames[voiced])
    if not voiced.any():
        return SpeechEvidence(0, int(active.sum()), 0.0)
    flux = float(np.median(_spectral_flux(spectrum)[voiced]))
    return SpeechEvidence(int(voiced.sum()), int(active.sum()), flux)


def _frames(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """30 ms frames of an 8 kHz copy, as float64 (a new array the caller may scale in place)."""
    samples = np.asarray(mono, dtype=np.float32)
    if sample_rate != ANALYSIS_RATE:
        samples = soxr.resample(samples, sample_rate, ANALYSIS_RATE, quality="MQ")
    count = len(samples) // FRAME
    return samples[: count * FRAME].reshape(count, FRAME).copy()


def _webrtc_speech(frames: np.ndarray) -> np.ndarray:
    vad = webrtcvad.Vad(VAD_AGGRESSIVENESS)
    pcm = np.rint(np.clip(frames, -1.0, 1.0) * 32767.0).astype("<i2")
    return np.fromiter(
        (vad.is_speech(frame.tobytes(), ANALYSIS_RATE) for frame in pcm), dtype=bool,
        count=len(pcm),
    )


def _flatness(spectrum: np.ndarray) -> np.ndarray:
    """Geometric over arithmetic mean of the band's power: near 0 for tones, ~0.5 for noise."""
    power = np.square(spectrum[:, _BAND]) + np.float32(1e-12)
    return np.asarray(np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1))


def _spectral_flux(spectrum: np.ndarray) -> np.ndarray:
    """How much of each frame's spectral shape differs from the frame before (0 to 1)."""
    shape = spectrum / (spectrum.sum(axis=1, keepdims=True) + 1e-12)
    change = 0.5 * np.abs(np.diff(shape, axis=0)).sum(axis=1)
    return np.concatenate([[0.0], change])
