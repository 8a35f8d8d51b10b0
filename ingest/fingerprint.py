"""Recording prints: recognise the same recording uploaded twice, however it was re-encoded.

Upholds P6: a batch is released only with k distinct contributors *and* k distinct recordings.
Without this check, k−1 accounts could each upload one copy of the same recording, re-encoded,
resampled or lightly noised so that no byte matches, and pad a bucket around the one real
voice in it. The upload path compares the print of every new clip with the prints of the clips
already in its bucket and refuses a match as a duplicate recording.

A print is a small spectrogram of the loudest part of the clip, made so that what a copy
changes hardly moves it, while what tells two takes of the same word apart does:

- the clip is analysed at 8 kHz, in ``PRINT_SHAPE[0]`` mel bands between 100 Hz and 3.6 kHz, so
  an 8 kHz upload looks like a 48 kHz one and codecs, which mostly change the top of the
  spectrum, change little;
- it is anchored on its energy centroid (the power-weighted mean time of the frames within
  ``ANCHOR_RANGE_DB`` of the loudest), not on its edges, so silence added or cut at either end,
  a codec delay or light noise does not shift it; ``PRINT_SHAPE[1]`` frames of 32 ms every
  20 ms are taken around that centre (0.65 s, a spoken word; a longer clip is printed by its
  middle);
- band energies in dB are floored ``FLOOR_DB`` below the loudest cell, so noise that fills the
  silences and the quiet cells hardly counts, and gain cancels out;
- each frame's spectral envelope (its mean over three neighbouring bands) is subtracted, leaving
  the fine structure: where the harmonics of the voice and the formant edges sit, which a copy
  keeps and a new take, even by the same speaker, does not;
- the result is centred and scaled to unit norm, so the similarity of two prints is their dot
  product: the Pearson correlation of the two spectrograms, in [-1, 1].

Every function is pure. ``SAME_RECORDING_SCORE`` is calibrated on the Free Spoken Digit
Dataset by ``benchmarks/fingerprint_calibration.py``.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
import scipy.fft
import scipy.signal
import soxr

FloatArray = npt.NDArray[np.float32]

PRINT_SHAPE: Final[tuple[int, int]] = (24, 32)  # (mel bands, frames)
SAME_RECORDING_SCORE: Final[float] = 0.92
PRINT_FORMAT_VERSION: Final[int] = 1
PRINT_BYTES: Final[int] = 1 + PRINT_SHAPE[0] * PRINT_SHAPE[1]  # version byte + one int8 a cell

MIN_SAMPLE_RATE: Final[int] = 8000
ANALYSIS_RATE: Final[int] = 8000
FRAME_LENGTH: Final[int] = 256  # 32 ms at 8 kHz: resolves the harmonics of a voice
FRAME_HOP: Final[int] = 160  # 20 ms between the frames of a print
ANCHOR_HOP: Final[int] = 80  # 10 ms between the frames that place the energy centroid
FFT_SIZE: Final[int] = 512
LOWEST_BAND_HZ: Final[float] = 100.0
HIGHEST_BAND_HZ: Final[float] = 3600.0
ANCHOR_RANGE_DB: Final[float] = 25.0
FLOOR_DB: Final[float] = 30.0
ENVELOPE_BANDS: Final[int] = 3
# Stored cells are z-scores times this step, rounded to int8: ±127 covers ±10.6 standard
# deviations (FSDD prints stay within ±7), and rounding costs < 3e-3 of correlation.
QUANTIZATION_STEPS_PER_SD: Final[float] = 12.0

_CELL_COUNT: Final[int] = PRINT_SHAPE[0] * PRINT_SHAPE[1]
_POWER_EPSILON: Final[float] = 1e-12


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _mel_filterbank(band_count: int) -> FloatArray:
    """Triangular mel filters over the FFT bins, shape (FFT_SIZE // 2 + 1, band_count)."""
    edges_mel = np.linspace(
        _hz_to_mel(np.array(LOWEST_BAND_HZ)),
        _hz_to_mel(np.array(HIGHEST_BAND_HZ)),
        band_count + 2,
    )
    edges_hz = _mel_to_hz(edges_mel)
    bin_hz = np.arange(FFT_SIZE // 2 + 1) * (ANALYSIS_RATE / FFT_SIZE)
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bin_hz[:, None] - lower) / (centre - lower)
    falling = (upper - bin_hz[:, None]) / (upper - centre)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    # A narrow low band may fall between bins: give each at least its nearest bin.
    for band, hz in enumerate(centre):
        if not weights[:, band].any():
            weights[round(hz * FFT_SIZE / ANALYSIS_RATE), band] = 1.0
    filters: FloatArray = (weights / weights.sum(axis=0)).astype(np.float32)
    return filters


_MEL_FILTERS: Final[FloatArray] = _mel_filterbank(PRINT_SHAPE[0])
_BIN_HZ: Final[npt.NDArray[np.float64]] = np.arange(FFT_SIZE // 2 + 1, dtype=np.float64) * (
    ANALYSIS_RATE / FFT_SIZE
)
_BAND_MASK: Final[FloatArray] = ((_BIN_HZ >= LOWEST_BAND_HZ) & (_BIN_HZ <= HIGHEST_BAND_HZ)).astype(
    np.float32
)
_WINDOW: Final[FloatArray] = np.hanning(FRAME_LENGTH).astype(np.float32)
_WINDOW_SQUARED: Final[FloatArray] = np.square(_WINDOW)
# The print's band as a linear-phase filter, for the energies that place the print.
_BAND_PASS: Final[FloatArray] = np.asarray(
    scipy.signal.firwin(101, [LOWEST_BAND_HZ, HIGHEST_BAND_HZ], pass_zero=False, fs=ANALYSIS_RATE),
    dtype=np.float32,
)
# Room on each side of the clip, so frames centred anywhere within it lie inside the signal.
_MARGIN: Final[int] = FRAME_LENGTH + PRINT_SHAPE[1] * FRAME_HOP // 2


def _power_spectra(signal: FloatArray, starts: npt.NDArray[np.intp]) -> FloatArray:
    """Power spectrum of the windowed frames beginning at ``starts``, shape (frames, bins).
    Single precision throughout: ``scipy.fft`` keeps float32, where NumPy's FFT widens."""
    frames = signal[starts[:, None] + np.arange(FRAME_LENGTH)]
    spectrum = scipy.fft.rfft(frames * _WINDOW, n=FFT_SIZE, axis=1)
    power: FloatArray = np.square(spectrum.real) + np.square(spectrum.imag)
    return power


def _energy_centroid(padded: FloatArray) -> float:
    """Power-weighted mean frame centre (in samples) of the frames near the loudest one.

    A frame's energy in the print's band is taken in the time domain: the band-passed signal,
    squared, summed under the squared window (Parseval), every ``ANCHOR_HOP`` samples. Two
    FFT convolutions over the clip, where a spectrum per frame cost ~5 ms per second of audio.
    """
    band = scipy.signal.oaconvolve(padded, _BAND_PASS, mode="same")
    energy = scipy.signal.oaconvolve(np.square(band), _WINDOW_SQUARED, mode="valid")
    starts = np.arange(0, len(energy), ANCHOR_HOP)
    energy = np.maximum(energy[starts], 0.0)
    energy_db = 10.0 * np.log10(energy + _POWER_EPSILON)
    weights = np.where(energy_db >= energy_db.max() - ANCHOR_RANGE_DB, energy, 0.0)
    mean_start = float(np.sum(weights * starts) / np.sum(weights))
    return mean_start + FRAME_LENGTH / 2


def _remove_envelope(band_db: FloatArray) -> FloatArray:
    """Subtract from each cell the mean of it and its neighbouring bands (frames, bands)."""
    reach = ENVELOPE_BANDS // 2
    edged = np.pad(band_db, ((0, 0), (reach, reach)), mode="edge")
    envelope = (
        sum(edged[:, offset : offset + band_db.shape[1]] for offset in range(ENVELOPE_BANDS))
        / ENVELOPE_BANDS
    )
    return (band_db - envelope).astype(np.float32)


def recording_print(samples: np.ndarray, sample_rate: int) -> FloatArray:
    """The print of a mono clip (float samples in [-1, 1]) at ``sample_rate`` (≥ 8 kHz).

    Returns a float32 array of ``PRINT_SHAPE`` with zero mean and unit norm, so that the dot
    product of two prints is their correlation. A clip with no signal at all (digital silence)
    has an all-zero print, which scores 0 against every other print.
    """
    mono = np.asarray(samples, dtype=np.float32)
    if mono.ndim != 1:
        raise ValueError(f"expected mono samples (one dimension), got shape {mono.shape}")
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"sample rate {sample_rate} Hz is below {MIN_SAMPLE_RATE} Hz")
    if not np.isfinite(mono).all():
        mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
    mono = np.clip(mono, -1.0, 1.0)
    if sample_rate != ANALYSIS_RATE and len(mono):
        mono = soxr.resample(mono, sample_rate, ANALYSIS_RATE).astype(np.float32, copy=False)
    if not mono.any():
        return np.zeros(PRINT_SHAPE, dtype=np.float32)
    padded = np.pad(mono, (_MARGIN, _MARGIN))
    centre = _energy_centroid(padded)
    frame_offsets = (np.arange(PRINT_SHAPE[1]) - (PRINT_SHAPE[1] - 1) / 2) * FRAME_HOP
    starts = np.rint(centre - FRAME_LENGTH / 2 + frame_offsets).astype(np.intp)
    starts = np.clip(starts, 0, len(padded) - FRAME_LENGTH)
    band_power = _power_spectra(padded, starts) @ _MEL_FILTERS
    band_db = 10.0 * np.log10(band_power + _POWER_EPSILON)
    band_db = np.maximum(band_db, band_db.max() - FLOOR_DB)
    cells = _remove_envelope(band_db).T  # (bands, frames)
    centred = cells - cells.mean()
    norm = float(np.linalg.norm(centred))
    if norm < 1e-6:
        return np.zeros(PRINT_SHAPE, dtype=np.float32)
    unit: FloatArray = (centred / norm).astype(np.float32)
    return unit


def print_to_bytes(fingerprint: np.ndarray) -> bytes:
    """``PRINT_BYTES`` bytes: a format version byte, then each cell's z-score as int8."""
    cells = _checked_print(fingerprint)
    z_scores = cells * math.sqrt(_CELL_COUNT)
    quantized = np.clip(np.rint(z_scores * QUANTIZATION_STEPS_PER_SD), -127, 127)
    payload: bytes = quantized.astype(np.int8).tobytes()
    return bytes([PRINT_FORMAT_VERSION]) + payload


def print_from_bytes(data: bytes) -> FloatArray:
    """The print stored by ``print_to_bytes``, again centred and of unit norm."""
    if len(data) != PRINT_BYTES:
        raise ValueError(f"a stored print is {PRINT_BYTES} bytes, got {len(data)}")
    if data[0] != PRINT_FORMAT_VERSION:
        raise ValueError(
            f"stored print has format version {data[0]}, expected {PRINT_FORMAT_VERSION}"
        )
    cells = np.frombuffer(data, dtype=np.int8, offset=1).astype(np.float32)
    centred = cells - cells.mean()
    norm = float(np.linalg.norm(centred))
    if norm == 0.0:
        return np.zeros(PRINT_SHAPE, dtype=np.float32)
    unit: FloatArray = (centred / norm).reshape(PRINT_SHAPE)
    return unit


def similarity_scores(query: np.ndarray, prints: np.ndarray) -> FloatArray:
    """Correlation of ``query`` with each of ``prints`` (shape (n, *PRINT_SHAPE)), in [-1, 1].

    One matrix-vector product: keep the bucket's prints as one contiguous float32 array.
    """
    query_cells = _checked_print(query).reshape(_CELL_COUNT)
    stacked = np.asarray(prints, dtype=np.float32)
    if stacked.ndim != 3 or stacked.shape[1:] != PRINT_SHAPE:
        raise ValueError(f"expected prints of shape (n, *{PRINT_SHAPE}), got {stacked.shape}")
    scores = stacked.reshape(len(stacked), _CELL_COUNT) @ query_cells
    return np.clip(scores, -1.0, 1.0, out=scores)


def is_duplicate(query: np.ndarray, prints: np.ndarray) -> bool:
    """Whether any of ``prints`` is the same recording as ``query`` (score ≥ the threshold)."""
    scores = similarity_scores(query, prints)
    return bool(scores.size and scores.max() >= SAME_RECORDING_SCORE)


def _checked_print(fingerprint: np.ndarray) -> FloatArray:
    cells = np.asarray(fingerprint, dtype=np.float32)
    if cells.shape != PRINT_SHAPE:
        raise ValueError(f"expected a print of shape {PRINT_SHAPE}, got {cells.shape}")
    return cells
