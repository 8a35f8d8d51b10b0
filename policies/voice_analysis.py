"""One short-time analysis of a clip for the pseudo-voice transform: pitch and a smooth envelope.

Every 10 ms frame is analysed from one 40 ms windowed spectrum, all frames at once:

- **pitch** by the window-corrected normalised autocorrelation (Boersma 1993), computed from
  the lower half of the spectrum at half the rate, with a voicing decision (peak height and
  level) and the shortest-lag choice that keeps a frame from jumping an octave down;
- **envelope** as a recogniser sees it: power in triangular mel bands up to the release's
  bandwidth, whose log is smoothed by keeping the first 13 DCT coefficients (the MFCCs a
  recogniser keeps) and read out on a coarse linear grid. What a speaker encoder's finer mel
  resolution adds beyond those coefficients (harmonics, fine spectral detail) is not carried.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

HOP_S = 0.010
WINDOW_S = 0.040
F0_MIN_HZ = 60.0
F0_MAX_HZ = 400.0
# A frame is voiced when its normalised autocorrelation peak reaches this and it is loud enough.
VOICING_THRESHOLD = 0.5
VOICED_WITHIN_DB = 35.0
MEL_LOW_HZ = 80.0
MEL_BANDS = 30
MEL_CEPSTRA = 13
# The smooth envelope is kept on a grid of this spacing.
ENVELOPE_SPACING_HZ = 125.0
FLOOR = 1e-12


@dataclass(frozen=True, eq=False)
class Grid:
    """Frame layout and transform sizes for one sample rate."""

    rate: int
    hop: int
    window: int
    n_fft: int
    n_envelope: int

    @classmethod
    @functools.lru_cache(maxsize=8)
    def for_rate(cls, rate: int) -> Grid:
        window = round(WINDOW_S * rate)
        return cls(
            rate=rate,
            hop=max(1, round(HOP_S * rate)),
            window=window,
            # The window plus its longest lag: no circular wrap in the autocorrelation.
            n_fft=_power_of_two(window + int(np.ceil(rate / F0_MIN_HZ))),
            n_envelope=_power_of_two(round(rate / ENVELOPE_SPACING_HZ)),
        )

    def frame_count(self, length: int) -> int:
        return length // self.hop + 1

    @functools.cached_property
    def frequencies(self) -> np.ndarray:
        return np.fft.rfftfreq(self.n_fft, 1.0 / self.rate)

    @functools.cached_property
    def envelope_frequencies(self) -> np.ndarray:
        return np.fft.rfftfreq(self.n_envelope, 1.0 / self.rate)

    @functools.cached_property
    def analysis_window(self) -> np.ndarray:
        return np.hanning(self.window).astype(np.float32)

    @functools.cached_property
    def window_acf(self) -> np.ndarray:
        """The analysis window's own autocorrelation at half the rate, normalised."""
        power = np.abs(sfft.rfft(self.analysis_window, self.n_fft)) ** 2
        acf = sfft.irfft(power[: self.n_fft // 4 + 1], self.n_fft // 2)
        return np.asarray(acf / acf[0])

    @functools.cached_property
    def synthesis_window(self) -> np.ndarray:
        """Periodic Hann of two hops: frames overlapping by a hop sum to one."""
        return np.hanning(2 * self.hop + 1)[:-1].astype(np.float32)


def _power_of_two(n: int) -> int:
    return 1 << int(np.ceil(np.log2(max(n, 2))))


def frames_of(samples: np.ndarray, length: int, hop: int, count: int) -> np.ndarray:
    """``count`` frames of ``length`` samples centred on multiples of ``hop`` (zeros outside)."""
    half = length // 2
    padded = np.zeros(count * hop + length + 1, dtype=np.float32)
    padded[half : half + len(samples)] = samples
    view = np.lib.stride_tricks.sliding_window_view(padded, length)
    return np.asarray(view[np.arange(count) * hop])


@dataclass(frozen=True)
class Analysis:
    """What the mapping needs of one clip, per frame."""

    f0_hz: np.ndarray  # 0 where unvoiced
    voiced: np.ndarray
    envelopes: np.ndarray  # smooth log power per sample (natural log), on the envelope grid


def analyse(samples: np.ndarray, grid: Grid, *, high_hz: float) -> Analysis:
    """Pitch and smooth envelope (mel bands up to ``high_hz``) of every frame of ``samples``."""
    count = grid.frame_count(len(samples))
    window = grid.analysis_window
    frames = frames_of(samples, grid.window, grid.hop, count)
    frames = (frames - frames.mean(axis=1, keepdims=True)) * window
    power = np.abs(sfft.rfft(frames, grid.n_fft, axis=1)) ** 2
    f0_hz, voiced = _pitch(power, grid)
    smoothing = _mel_smoothing(grid.rate, grid.n_fft, grid.n_envelope, round(high_hz))
    bands = smoothing.band_power(power)
    log_bands = np.log(np.maximum(bands, np.float32(FLOOR) * max(float(bands.max()), FLOOR)))
    # einsum, not BLAS: matrices this small cost more in BLAS threads than in arithmetic.
    envelopes = np.einsum("fb,be->fe", log_bands, smoothing.to_envelope) - np.log(np.sum(window**2))
    return Analysis(f0_hz=f0_hz, voiced=voiced, envelopes=np.asarray(envelopes, np.float64))


def _pitch(power: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """F0 per frame from the window-corrected normalised autocorrelation of the lower
    half-band at half the rate: pitch needs no more, and it halves the transform."""
    rate = grid.rate / 2
    lag_low = max(2, int(rate / F0_MAX_HZ))
    lag_high = min(grid.window // 2 - 2, int(np.ceil(rate / F0_MIN_HZ)))
    acf = sfft.irfft(power[:, : grid.n_fft // 4 + 1], grid.n_fft // 2, axis=1)[:, : lag_high + 2]
    normalised = (acf / np.maximum(acf[:, :1], FLOOR)) / grid.window_acf[: lag_high + 2]
    segment = normalised[:, lag_low - 1 : lag_high + 2]
    inner = segment[:, 1:-1]
    local_max = (inner >= segment[:, :-2]) & (inner >= segment[:, 2:])
    peak = np.max(np.where(local_max, inner, -1.0), axis=1)
    # The shortest lag whose peak nearly matches the best: no jumps an octave down.
    chosen = np.argmax(local_max & (inner >= 0.9 * peak[:, None]), axis=1)
    rows = np.arange(len(power))
    left, centre, right = segment[rows, chosen], inner[rows, chosen], segment[rows, chosen + 2]
    curvature = left - 2 * centre + right
    offset = np.where(curvature < 0, 0.5 * (left - right) / np.minimum(curvature, -FLOOR), 0.0)
    lag = lag_low + chosen + np.clip(offset, -0.5, 0.5)
    level_db = 10 * np.log10(np.maximum(acf[:, 0], FLOOR))
    loud = level_db > level_db.max() - VOICED_WITHIN_DB
    voiced = _drop_short_runs((peak >= VOICING_THRESHOLD) & loud, 3)
    return np.where(voiced, rate / lag, 0.0), voiced


def _drop_short_runs(mask: np.ndarray, shortest: int) -> np.ndarray:
    """``mask`` without runs of True shorter than ``shortest``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long_runs = ends - starts >= shortest
    keep = np.zeros(len(mask) + 1, dtype=np.int32)
    np.add.at(keep, starts[long_runs], 1)
    np.add.at(keep, ends[long_runs], -1)
    return np.asarray(np.cumsum(keep)[:-1] > 0)


@dataclass(frozen=True, eq=False)
class _MelSmoothing:
    """Triangular bands whose edges are their neighbours' centres: between two centres a bin
    rises into the upper band with weight ``rising`` and falls out of the lower with
    ``1 − rising``, so band powers are two segment sums (no matrix product)."""

    first_bin: int
    segment_starts: np.ndarray  # bins from one centre (or the lowest edge) to the next
    rising: np.ndarray  # per bin from first_bin on
    norms: np.ndarray  # each band's total weight
    to_envelope: np.ndarray  # (bands, n_envelope // 2 + 1): smoothed, read out on the grid

    def band_power(self, power: np.ndarray) -> np.ndarray:
        """(frames, bins) power → (frames, bands) mean power in each band."""
        part = power[:, self.first_bin : self.first_bin + len(self.rising)]
        rising = np.add.reduceat(part * self.rising, self.segment_starts, axis=1)
        falling = np.add.reduceat(part * (1 - self.rising), self.segment_starts, axis=1)
        return np.asarray((rising[:, :-1] + falling[:, 1:]) / self.norms)


def _mel(hz: float | np.ndarray) -> np.ndarray:
    return np.asarray(2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0))


@functools.lru_cache(maxsize=64)
def _mel_smoothing(rate: int, n_fft: int, n_envelope: int, high_hz: int) -> _MelSmoothing:
    """Triangular mel bands from ``MEL_LOW_HZ`` to ``high_hz``; their log powers smoothed by
    keeping the first ``MEL_CEPSTRA`` DCT coefficients and read out on the envelope grid by
    linear interpolation (held flat beyond the first and last band)."""
    frequencies = np.fft.rfftfreq(n_fft, 1.0 / rate)
    edges_mel = np.linspace(_mel(MEL_LOW_HZ), _mel(float(high_hz)), MEL_BANDS + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    inside = np.flatnonzero((frequencies > edges[0]) & (frequencies < edges[-1]))
    first, last = int(inside[0]), int(inside[-1])
    # Segment j runs from edges[j] to edges[j + 1]: the rising half of band j, the falling
    # half of band j − 1.
    segment = np.searchsorted(edges, frequencies[first : last + 1], side="right") - 1
    starts = np.searchsorted(segment, np.arange(MEL_BANDS + 1))
    if np.any(np.diff(np.concatenate([starts, [len(segment)]])) == 0):
        raise ValueError(f"mel bands narrower than a bin at {rate} Hz up to {high_hz} Hz")
    low, high = edges[segment], edges[segment + 1]
    rising = (frequencies[first : last + 1] - low) / (high - low)
    norms = np.add.reduceat(rising, starts)[:-1] + np.add.reduceat(1 - rising, starts)[1:]
    index = np.arange(MEL_BANDS)
    dct = np.sqrt(2.0 / MEL_BANDS) * np.cos(
        np.pi * np.outer(np.arange(MEL_CEPSTRA), index + 0.5) / MEL_BANDS
    )
    dct[0] /= np.sqrt(2.0)
    keep_first = dct.T @ dct  # orthonormal DCT-II rows: project onto the first coefficients
    centres = edges[1:-1]
    readout = np.zeros((MEL_BANDS, n_envelope // 2 + 1))
    points = np.clip(np.fft.rfftfreq(n_envelope, 1.0 / rate), centres[0], centres[-1])
    upper = np.clip(np.searchsorted(centres, points), 1, MEL_BANDS - 1)
    weight = (points - centres[upper - 1]) / (centres[upper] - centres[upper - 1])
    columns = np.arange(len(points))
    readout[upper - 1, columns] = 1.0 - weight
    readout[upper, columns] += weight
    return _MelSmoothing(
        first_bin=first,
        segment_starts=starts,
        rising=rising.astype(np.float32),
        norms=norms.astype(np.float32),
        to_envelope=(keep_first @ readout).astype(np.float32),
    )
