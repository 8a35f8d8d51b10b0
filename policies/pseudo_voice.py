"""One pseudo-voice per release: every clip of a batch mapped onto the same drawn voice (P3).

A per-clip random transform moves each voice by a different amount but keeps what sets it apart
from the others, so an attacker who trains on transformed clips still tells speakers apart. A
release is already a group of at least k learners; this transform uses that: it maps every
clip of the release onto *one* target voice drawn for the release, so the k voices of a batch
differ only by what the mapping leaves behind (their words, timing and intonation shape). This is
the many-to-one design that held up best against trained ("semi-informed") attackers in the
VoicePrivacy Challenges, done here by signal processing (see ``docs/privacy.md``).

Per clip, analysed once at its own rate (10 ms hop, all frames at once):

- **pitch** by normalised autocorrelation (Boersma 1993): each voiced frame's log F0 is mapped
  from the clip's own mean and spread to the target's, so the intonation contour keeps its shape;
- **spectral envelope** by cepstral smoothing; the clip's formant scale (vocal-tract length) is
  found by aligning its mean voiced envelope, tilt removed, with a uniform-tube (neutral vowel)
  template on a log-frequency axis, and the envelope is warped along frequency to the target's
  scale; the clip's own spectral tilt is replaced by the target's and everything above the
  target's bandwidth is cut;
- **excitation** is synthesised anew (pulses at the mapped F0 plus noise above the target's
  voicing limit, noise in unvoiced frames), so the speaker's own voice quality is not carried.

The target is drawn from the caller's generator (the release seeds it from the operating
system's CSPRNG) and lives only in memory: its ``repr`` shows none of it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

HOP_S = 0.010
WINDOW_S = 0.040  # one analysis window for pitch and envelope
F0_MIN_HZ = 60.0
F0_MAX_HZ = 400.0
# A frame is voiced when its normalised autocorrelation peak reaches this and it is loud enough.
VOICING_THRESHOLD = 0.5
VOICED_WITHIN_DB = 35.0
# Cepstral smoothing keeps quefrencies below 1.8 ms: formants, not harmonics (F0 ≤ 400 Hz).
LIFTER_S = 0.0018
# The band over which formant scale and tilt are measured.
BAND_LOW_HZ = 200.0
BAND_HIGH_HZ = 3400.0
# Formants of a uniform 17.5 cm tube, closed at the glottis: the neutral vowel.
NEUTRAL_FORMANTS_HZ = (500.0, 1500.0, 2500.0, 3500.0)
MAX_WARP_OCTAVES = 0.4
_LOG_GRID_POINTS = 96
_SPREAD_RATIO_LIMITS = (0.25, 4.0)
_FLOOR = 1e-12

# Where a release's target is drawn from: narrow enough to stay an ordinary voice.
TARGET_F0_HZ = (100.0, 200.0)
TARGET_F0_SPREAD_OCTAVES = (0.08, 0.16)
TARGET_FORMANT_SCALE = (0.95, 1.10)
TARGET_TILT_DB_PER_OCTAVE = (-9.0, -5.0)
TARGET_BANDWIDTH_HZ = (3500.0, 3900.0)
TARGET_VOICING_LIMIT_HZ = (2800.0, 3400.0)


@dataclass(frozen=True)
class PseudoVoice:
    """The voice every clip of one release is mapped onto."""

    f0_hz: float
    f0_spread_octaves: float
    formant_scale: float  # relative to the neutral tube (> 1: a shorter vocal tract)
    tilt_db_per_octave: float
    bandwidth_hz: float
    voicing_limit_hz: float  # above it, voiced frames are excited by noise (breathiness)

    def __repr__(self) -> str:
        return "PseudoVoice(<drawn for one release, not shown>)"


def draw_pseudo_voice(rng: np.random.Generator) -> PseudoVoice:
    """A target voice from ``rng``: log-uniform pitch and scale, uniform in the rest."""

    def log_uniform(bounds: tuple[float, float]) -> float:
        return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))

    return PseudoVoice(
        f0_hz=log_uniform(TARGET_F0_HZ),
        f0_spread_octaves=float(rng.uniform(*TARGET_F0_SPREAD_OCTAVES)),
        formant_scale=log_uniform(TARGET_FORMANT_SCALE),
        tilt_db_per_octave=float(rng.uniform(*TARGET_TILT_DB_PER_OCTAVE)),
        bandwidth_hz=float(rng.uniform(*TARGET_BANDWIDTH_HZ)),
        voicing_limit_hz=float(rng.uniform(*TARGET_VOICING_LIMIT_HZ)),
    )


@dataclass(frozen=True, eq=False)
class _Grid:
    """Frame layout and transform sizes for one sample rate."""

    rate: int
    hop: int
    window: int
    n_fft: int
    lifter: int
    n_envelope: int  # a smoothed envelope needs only this many points per frame

    @classmethod
    @functools.lru_cache(maxsize=8)
    def for_rate(cls, rate: int) -> _Grid:
        window = round(WINDOW_S * rate)
        lifter = max(2, round(LIFTER_S * rate))
        return cls(
            rate=rate,
            hop=max(1, round(HOP_S * rate)),
            window=window,
            # The window plus its longest lag: no circular wrap in the autocorrelation.
            n_fft=_power_of_two(window + int(np.ceil(rate / F0_MIN_HZ))),
            lifter=lifter,
            n_envelope=_power_of_two(4 * lifter),
        )

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
        """The analysis window's own autocorrelation, normalised, at the pitch lags."""
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
    """What the mapping needs of one clip, per 10 ms frame."""

    f0_hz: np.ndarray  # 0 where unvoiced
    voiced: np.ndarray
    envelopes: np.ndarray  # smoothed log power (natural log), ``n_envelope // 2 + 1`` points


def analyse(samples: np.ndarray, grid: _Grid, count: int) -> Analysis:
    """Pitch and smoothed envelope of every frame from one short-time spectrum."""
    window = grid.analysis_window
    frames = frames_of(samples, grid.window, grid.hop, count)
    frames = (frames - frames.mean(axis=1, keepdims=True)) * window
    power = np.abs(sfft.rfft(frames, grid.n_fft, axis=1)) ** 2
    f0_hz, voiced = _pitch(power, grid)
    log_power = np.log(np.maximum(power, np.float32(_FLOOR) * max(float(power.max()), _FLOOR)))
    cepstrum = sfft.irfft(log_power, grid.n_fft, axis=1)[:, : grid.lifter]
    # The liftered cepstrum evaluated on a coarse frequency grid: all a smooth envelope needs.
    symmetric = np.zeros((count, grid.n_envelope), dtype=np.float32)
    symmetric[:, : grid.lifter] = cepstrum
    symmetric[:, grid.n_envelope - grid.lifter + 1 :] = cepstrum[:, :0:-1]
    envelopes = sfft.rfft(symmetric, axis=1).real - np.log(np.sum(window**2))
    return Analysis(f0_hz=f0_hz, voiced=voiced, envelopes=np.asarray(envelopes, np.float64))


def _pitch(power: np.ndarray, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """F0 per frame from the window-corrected normalised autocorrelation (Boersma 1993), of
    the lower half-band at half the rate: pitch needs no more, and it halves the transform."""
    rate = grid.rate / 2
    lag_low = max(2, int(rate / F0_MAX_HZ))
    lag_high = min(grid.window // 2 - 2, int(np.ceil(rate / F0_MIN_HZ)))
    acf = sfft.irfft(power[:, : grid.n_fft // 4 + 1], grid.n_fft // 2, axis=1)[:, : lag_high + 2]
    normalised = (acf / np.maximum(acf[:, :1], _FLOOR)) / grid.window_acf[: lag_high + 2]
    segment = normalised[:, lag_low - 1 : lag_high + 2]
    inner = segment[:, 1:-1]
    local_max = (inner >= segment[:, :-2]) & (inner >= segment[:, 2:])
    peak = np.max(np.where(local_max, inner, -1.0), axis=1)
    # The shortest lag whose peak nearly matches the best: no jumps an octave down.
    chosen = np.argmax(local_max & (inner >= 0.9 * peak[:, None]), axis=1)
    rows = np.arange(len(power))
    left, centre, right = segment[rows, chosen], inner[rows, chosen], segment[rows, chosen + 2]
    curvature = left - 2 * centre + right
    offset = np.where(curvature < 0, 0.5 * (left - right) / np.minimum(curvature, -_FLOOR), 0.0)
    lag = lag_low + chosen + np.clip(offset, -0.5, 0.5)
    level_db = 10 * np.log10(np.maximum(acf[:, 0], _FLOOR))
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


def _detrended(values: np.ndarray, log_f: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (over ``log_f``) less their least-squares line."""
    centred = log_f - log_f.mean()
    slope = (values - values.mean(axis=-1, keepdims=True)) @ centred / np.sum(centred**2)
    return np.asarray(values - values.mean(axis=-1, keepdims=True) - slope[..., None] * centred)


def _neutral_pattern(frequencies: np.ndarray, scale: float) -> np.ndarray:
    """Log power of the neutral-vowel resonances scaled by ``scale``, at ``frequencies``."""
    pattern = np.zeros_like(frequencies)
    for formant in NEUTRAL_FORMANTS_HZ:
        centre, half_width = formant * scale, 60.0 * scale
        pattern -= np.log(((frequencies - centre) ** 2 + half_width**2)
                          * ((frequencies + centre) ** 2 + half_width**2))
    return pattern


def formant_warp(mean_envelope: np.ndarray, frequencies: np.ndarray, target_scale: float,
                 *, high_hz: float) -> float:
    """The frequency factor that brings a clip's mean voiced envelope onto the neutral-tube
    pattern scaled by ``target_scale`` (best correlation on a log-frequency axis, tilts
    removed); within ±``MAX_WARP_OCTAVES``."""
    log_grid = np.log2(np.geomspace(BAND_LOW_HZ, high_hz, _LOG_GRID_POINTS))
    steps = np.linspace(-MAX_WARP_OCTAVES, MAX_WARP_OCTAVES, 33)
    # Warping by 2^s moves the clip's envelope value at f to f·2^s: read it at f·2^-s.
    clip = _detrended(np.interp(np.exp2(log_grid[None, :] - steps[:, None]), frequencies,
                                mean_envelope), log_grid)
    template = _detrended(_neutral_pattern(np.exp2(log_grid), target_scale), log_grid)
    score = clip @ template / np.maximum(np.linalg.norm(clip, axis=1), _FLOOR)
    return float(np.exp2(steps[int(np.argmax(score))]))


def tilt_db_per_octave(mean_envelope: np.ndarray, frequencies: np.ndarray, high_hz: float
                       ) -> float:
    """Slope of the least-squares line through a mean log-power envelope, in dB per octave."""
    band = (frequencies >= BAND_LOW_HZ) & (frequencies <= high_hz)
    log_f = np.log2(frequencies[band])
    centred = log_f - log_f.mean()
    slope = float(mean_envelope[band] @ centred / np.sum(centred**2))
    return slope * 10 / float(np.log(10))


def warp_envelopes(envelopes: np.ndarray, factor: float) -> np.ndarray:
    """Each envelope moved along frequency: the value at f goes to f·factor (edges held)."""
    bins = envelopes.shape[1]
    source = np.clip(np.arange(bins) / factor, 0, bins - 1)
    low = np.minimum(np.floor(source).astype(np.int64), bins - 2)
    weight = source - low
    return np.asarray(envelopes[:, low] * (1.0 - weight) + envelopes[:, low + 1] * weight)


def map_f0(f0_hz: np.ndarray, voiced: np.ndarray, target: PseudoVoice, strength: float
           ) -> np.ndarray:
    """Voiced frames' log F0 moved from the clip's mean and spread to the target's."""
    if not voiced.any():
        return np.zeros_like(f0_hz)
    log_f0 = np.log2(np.where(voiced, f0_hz, 1.0))
    mean = float(np.mean(log_f0[voiced]))
    spread = float(np.std(log_f0[voiced])) if voiced.sum() >= 5 else target.f0_spread_octaves
    ratio = np.clip((target.f0_spread_octaves / max(spread, 1e-3)) ** strength,
                    *_SPREAD_RATIO_LIMITS)
    centre = mean + strength * (np.log2(target.f0_hz) - mean)
    mapped = np.exp2(centre + (log_f0 - mean) * ratio)
    return np.where(voiced, np.clip(mapped, F0_MIN_HZ, F0_MAX_HZ), 0.0)


def convert(
    samples: np.ndarray,
    rate: int,
    target: PseudoVoice,
    *,
    rng: np.random.Generator,
    strength: float = 1.0,
) -> np.ndarray:
    """``samples`` spoken by ``target``: same length and rate. ``strength`` in [0, 1] moves
    pitch, formant scale and tilt that share of the way (0 resynthesises the clip's own)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength {strength} is outside [0, 1]")
    if len(samples) == 0:
        return np.zeros(0)
    grid = _Grid.for_rate(rate)
    count = len(samples) // grid.hop + 1
    analysis = analyse(samples, grid, count)
    reference = analysis.voiced if analysis.voiced.sum() >= 3 else np.ones(count, dtype=bool)
    coarse = grid.envelope_frequencies
    high = min(target.bandwidth_hz, 0.45 * rate, BAND_HIGH_HZ)

    warp = formant_warp(analysis.envelopes[reference].mean(axis=0), coarse,
                        target.formant_scale, high_hz=high)
    envelopes = warp_envelopes(analysis.envelopes, warp**strength)
    own_tilt = tilt_db_per_octave(envelopes[reference].mean(axis=0), coarse, high)
    frequencies = grid.frequencies
    octaves = np.log2(np.maximum(frequencies, BAND_LOW_HZ) / 1000.0)
    gain_db = (strength * (target.tilt_db_per_octave - own_tilt) * octaves
               + _band_edge(frequencies, min(target.bandwidth_hz, 0.45 * rate)))
    filters = _minimum_phase(envelopes, grid) * (10.0 ** (gain_db / 20.0)).astype(np.float32)

    f0 = map_f0(analysis.f0_hz, analysis.voiced, target, strength)
    excitation = _excitation(f0, grid, len(samples), target, rng)
    return _filter_and_add(excitation, filters, grid, len(samples))


def _band_edge(frequencies: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """Gain in dB: flat below ``cutoff_hz``, a raised-cosine fall to −80 dB over 300 Hz."""
    fall = np.clip((frequencies - cutoff_hz) / 300.0, 0.0, 1.0)
    return np.asarray(-80.0 * 0.5 * (1 - np.cos(np.pi * fall)))


def _minimum_phase(envelopes: np.ndarray, grid: _Grid) -> np.ndarray:
    """Minimum-phase frequency responses (``n_fft`` grid) whose power is ``exp(envelopes)``.

    Built on a grid four times the envelope's (impulse responses of 4·n_envelope samples, 32 ms
    at any rate: formant resonances have died away by then), then resampled by zero padding."""
    size = 4 * grid.n_envelope
    cepstrum = sfft.irfft(0.5 * envelopes.astype(np.float32), grid.n_envelope, axis=1)
    half = grid.n_envelope // 2
    causal = np.zeros((len(envelopes), size), dtype=np.float32)
    causal[:, 0] = cepstrum[:, 0]
    causal[:, 1:half] = 2.0 * cepstrum[:, 1:half]
    causal[:, half] = cepstrum[:, half]
    impulse = sfft.irfft(np.exp(sfft.rfft(causal, axis=1)), size, axis=1)
    return np.asarray(sfft.rfft(impulse, grid.n_fft, axis=1))


def _excitation(
    f0: np.ndarray, grid: _Grid, length: int, target: PseudoVoice, rng: np.random.Generator
) -> np.ndarray:
    """Unit-power pulses at ``f0`` in voiced frames, with noise above the target's voicing
    limit; unit-power noise in unvoiced frames."""
    count = len(f0)
    voiced = f0 > 0
    noise = rng.standard_normal(length).astype(np.float32)
    if not voiced.any():
        return noise
    positions = np.arange(length)
    # Log F0 is held across unvoiced gaps, so the pulse phase runs on smoothly.
    f0_per_sample = np.exp(np.interp(positions, np.arange(count)[voiced] * grid.hop,
                                     np.log(f0[voiced])))
    phase = np.cumsum(f0_per_sample / grid.rate)
    pulse_at = np.diff(np.floor(phase), prepend=0.0) > 0
    pulses = np.where(pulse_at, np.sqrt(grid.rate / f0_per_sample), 0.0)
    spectrum = sfft.rfft(noise)
    frequencies = np.fft.rfftfreq(length, 1.0 / grid.rate)
    breathy = 0.02 + 0.98 / (1 + np.exp(-(frequencies - target.voicing_limit_hz) / 250.0))
    breath = sfft.irfft(spectrum * np.sqrt(breathy), length)
    sample_voiced = voiced[np.minimum((positions + grid.hop // 2) // grid.hop, count - 1)]
    return np.asarray(np.where(sample_voiced, pulses + breath, noise), dtype=np.float32)


def _filter_and_add(excitation: np.ndarray, filters: np.ndarray, grid: _Grid, length: int
                    ) -> np.ndarray:
    """Excitation frames (periodic Hann, overlapping by a hop) through each frame's filter,
    overlap-added."""
    count = len(filters)
    frames = frames_of(excitation, 2 * grid.hop, grid.hop, count) * grid.synthesis_window
    out_frames = sfft.irfft(sfft.rfft(frames, grid.n_fft, axis=1) * filters, grid.n_fft, axis=1)
    blocks = -(-grid.n_fft // grid.hop)
    out_frames = np.pad(out_frames, ((0, 0), (0, blocks * grid.hop - grid.n_fft)))
    out_frames = out_frames.reshape(count, blocks, grid.hop)
    out = np.zeros((count + blocks, grid.hop))
    for block in range(blocks):
        out[block : block + count] += out_frames[:, block]
    # Excitation frame i starts one hop before its centre, i·hop: sample 0 is one hop in.
    return np.asarray(out.reshape(-1)[grid.hop : grid.hop + length])
