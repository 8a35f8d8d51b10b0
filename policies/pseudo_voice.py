"""One pseudo-voice per release: every clip of a batch mapped onto the same drawn voice (P3).

A per-clip random transform moves each voice by a different amount but keeps what sets it apart
from the others, so an attacker who trains on transformed clips still tells speakers apart. A
release is already a group of at least k learners; this transform uses that: it maps every clip
of the release onto *one* target voice drawn for the release, so the k voices of a batch differ
only by what the mapping leaves behind (their words, timing and intonation shape). It is the
many-to-one idea that held up best against trained attackers in the VoicePrivacy Challenges,
done by signal processing (``docs/privacy.md`` gives the sources and the measured limits).

Per clip, from one analysis (``policies.voice_analysis``):

- **pitch**: each voiced frame's log F0 is mapped from the clip's own mean and spread to the
  target's, so the intonation contour keeps its shape but not its level or range;
- **envelope**: smoothed as a recogniser's MFCCs see it; its long-term (voiced) average, which
  carries the speaker's and the microphone's colouring, is replaced by the target's (the
  target's spectral tilt); quiet unvoiced frames (the room and the microphone) become one
  target-shaped floor; nothing above the target's bandwidth is kept; optionally
  (``vocal_tract_share``) the envelope is warped along frequency so the clip's median third
  formant moves towards the target's vocal-tract length;
- **excitation** is synthesised anew (pulses at the mapped F0 with noise above the target's
  voicing limit, noise where unvoiced), so the speaker's own voice quality is not carried, and
  filtered frame by frame through minimum-phase filters of the envelopes, overlap-added.

Level is left to the caller (the release matches each clip's original level, which its
statistics publish). The target is drawn from the caller's generator (the release seeds it
from the operating system's CSPRNG) and lives only in memory: its ``repr`` shows none of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft as sfft

from policies.pseudo_prosody import retimed, spread_normalised, stylised_f0
from policies.voice_analysis import F0_MAX_HZ, F0_MIN_HZ, Grid, analyse, frames_of

# Where a release's target is drawn from: narrow enough to stay an ordinary voice.
TARGET_F0_HZ = (100.0, 200.0)
TARGET_F0_SPREAD_OCTAVES = (0.08, 0.16)
TARGET_FORMANT_SCALE = (0.95, 1.10)
TARGET_TILT_DB_PER_OCTAVE = (-9.0, -5.0)
TARGET_BANDWIDTH_HZ = (3500.0, 3900.0)
TARGET_VOICING_LIMIT_HZ = (2800.0, 3400.0)
# The release's prosody: where voicing starts and ends within the speech, its contour's fall
# and rise-fall, and the frame-to-frame spread of the log envelope.
TARGET_ONSET_SHARE = (0.10, 0.20)
TARGET_OFFSET_SHARE = (0.10, 0.20)
TARGET_FALL_OCTAVES = (0.10, 0.30)
TARGET_RISE_FALL_OCTAVES = (0.0, 0.10)
TARGET_SPREAD_DB = (10.0, 13.0)

# The band over which the long-term envelope is measured and replaced.
BAND_LOW_HZ = 200.0
MAX_LONG_TERM_CHANGE_DB = 20.0
# Unvoiced frames this far below the loudest become the floor, this far below it.
QUIET_BELOW_DB = 30.0
FLOOR_BELOW_DB = 50.0
# Vocal-tract length: the third formant of a uniform 17.5 cm tube is 2.5 kHz.
F3_SEARCH_HZ = (1900.0, 3400.0)
NEUTRAL_F3_HZ = 2500.0
MAX_WARP_OCTAVES = 0.25
_SPREAD_RATIO_LIMITS = (0.25, 4.0)
_DB = float(np.log(10) / 10)  # natural-log power per dB


@dataclass(frozen=True)
class PseudoVoice:
    """The voice every clip of one release is mapped onto."""

    f0_hz: float
    f0_spread_octaves: float  # standard deviation of log2 F0 over a clip's voiced frames
    formant_scale: float  # relative to the neutral tube (> 1: a shorter vocal tract)
    tilt_db_per_octave: float
    bandwidth_hz: float
    voicing_limit_hz: float  # above it, voiced frames are excited by noise too (breathiness)
    onset_share: float = 0.15  # of the speech before voicing starts (timing "anchored")
    offset_share: float = 0.15  # of the speech after voicing ends
    fall_octaves: float = 0.2  # the stylised contour's fall across the voicing
    rise_fall_octaves: float = 0.05
    spread_db: float = 11.5  # frame-to-frame spread of the log envelope, per frequency

    def __repr__(self) -> str:
        return "PseudoVoice(<drawn for one release, not shown>)"


Timing = Literal["uniform", "anchored"]


@dataclass(frozen=True)
class Prosody:
    """What the release's pseudo-voice takes from the release besides the voice: the one
    ``duration_s`` every clip is retimed to (None: each keeps its own), with ``timing``
    ``anchored`` the voicing onset and offset at the target's shares; the share of the way
    each clip's intonation moves to the release's stylised contour; and the share of the way
    the envelope's frame-to-frame spread moves to the target's."""

    duration_s: float | None = None
    timing: Timing = "uniform"
    intonation_share: float = 0.0
    spread_share: float = 0.0
    averaging_share: float = 0.0


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
        onset_share=float(rng.uniform(*TARGET_ONSET_SHARE)),
        offset_share=float(rng.uniform(*TARGET_OFFSET_SHARE)),
        fall_octaves=float(rng.uniform(*TARGET_FALL_OCTAVES)),
        rise_fall_octaves=float(rng.uniform(*TARGET_RISE_FALL_OCTAVES)),
        spread_db=float(rng.uniform(*TARGET_SPREAD_DB)),
    )


def convert(
    samples: np.ndarray,
    rate: int,
    target: PseudoVoice,
    *,
    rng: np.random.Generator,
    strength: float = 1.0,
    vocal_tract_share: float = 0.0,
    prosody: Prosody | None = None,
    release_envelopes: np.ndarray | None = None,
) -> np.ndarray:
    """``samples`` spoken by ``target``: same rate, level not matched; same length unless
    ``prosody`` retimes the clip to the release's duration.

    ``strength`` in [0, 1] moves pitch and long-term envelope that share of the way (0
    resynthesises the clip's own voice through the same vocoder); ``vocal_tract_share`` in
    [0, 1] is the share of the formant-scale warp applied (0: none); ``prosody`` takes timing,
    intonation and spectral dynamics from the release (``policies.pseudo_prosody``), and with
    ``release_envelopes`` (the mean of ``mapped_frames`` over the release's clips, retimed)
    mixes that share of the release's envelope into every frame of speech."""
    prosody = prosody or Prosody()
    if len(samples) == 0:
        return np.zeros(0)
    frames = mapped_frames(
        samples,
        rate,
        target,
        strength=strength,
        vocal_tract_share=vocal_tract_share,
        prosody=prosody,
    )
    return synthesise(
        frames,
        target,
        rng=rng,
        release_envelopes=release_envelopes,
        averaging_share=prosody.averaging_share,
    )


def synthesise(
    frames: MappedFrames,
    target: PseudoVoice,
    *,
    rng: np.random.Generator,
    release_envelopes: np.ndarray | None = None,
    averaging_share: float = 0.0,
) -> np.ndarray:
    """The samples of ``frames``: with ``release_envelopes``, ``averaging_share`` of the
    release's envelope is mixed into every frame of speech first; quiet frames are floored."""
    envelopes = frames.envelopes
    if release_envelopes is not None and release_envelopes.shape == envelopes.shape:
        share = averaging_share
        speech = ~frames.silent
        envelopes = envelopes.copy()
        envelopes[speech] = (1 - share) * envelopes[speech] + share * release_envelopes[speech]
    coarse = frames.grid.envelope_frequencies
    envelopes = quiet_frames_floored(
        envelopes, frames.voiced, coarse, target, frames.bandwidth_hz, silent=frames.silent
    )
    edge = 10.0 ** (_band_edge(frames.grid.frequencies, frames.bandwidth_hz) / 20.0)
    filters = _minimum_phase(envelopes, frames.grid) * edge.astype(np.float32)
    excitation = _excitation(frames.f0_hz, frames.grid, frames.length, target, rng)
    return _filter_and_add(excitation, filters, frames.grid, frames.length)


@dataclass(frozen=True, eq=False)
class MappedFrames:
    """A clip's frames mapped onto the target, before the quiet ones are floored."""

    grid: Grid
    bandwidth_hz: float
    length: int  # samples to synthesise
    f0_hz: np.ndarray
    voiced: np.ndarray
    envelopes: np.ndarray
    silent: np.ndarray  # lead-in and tail added by retiming


def mapped_frames(
    samples: np.ndarray,
    rate: int,
    target: PseudoVoice,
    *,
    strength: float = 1.0,
    vocal_tract_share: float = 0.0,
    prosody: Prosody | None = None,
) -> MappedFrames:
    """One analysis of ``samples`` with pitch, envelope and (``prosody``) timing, intonation
    and dynamics mapped onto ``target``: what ``convert`` synthesises."""
    prosody = prosody or Prosody()
    shares = (
        ("strength", strength),
        ("vocal_tract_share", vocal_tract_share),
        ("intonation_share", prosody.intonation_share),
        ("spread_share", prosody.spread_share),
        ("averaging_share", prosody.averaging_share),
    )
    for name, share in shares:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} {share} is outside [0, 1]")
    grid = Grid.for_rate(rate)
    bandwidth = min(target.bandwidth_hz, 0.45 * rate)
    analysis = analyse(samples, grid, high_hz=bandwidth)
    length = len(samples)
    silent = np.zeros(len(analysis.voiced), dtype=bool)
    if prosody.duration_s is not None:
        length = max(1, round(prosody.duration_s * rate))
        anchored = prosody.timing == "anchored"
        moved = retimed(
            analysis,
            grid.frame_count(length),
            hop_s=grid.hop / rate,
            onset_share=target.onset_share if anchored else None,
            offset_share=target.offset_share if anchored else None,
        )
        analysis, silent = moved.analysis, moved.silent
    reference = analysis.voiced if analysis.voiced.sum() >= 3 else np.ones_like(analysis.voiced)
    coarse = grid.envelope_frequencies
    envelopes = spread_normalised(
        analysis.envelopes,
        reference & ~silent,
        spread_db=target.spread_db,
        share=prosody.spread_share,
    )
    if vocal_tract_share > 0.0:
        warp = third_formant_warp(envelopes[reference], coarse, target.formant_scale)
        envelopes = warp_envelopes(envelopes, warp ** (strength * vocal_tract_share))
    long_term = envelopes[reference].mean(axis=0)
    envelopes = envelopes + strength * long_term_change(long_term, coarse, target, bandwidth)
    f0 = stylised_f0(
        map_f0(analysis.f0_hz, analysis.voiced, target, strength),
        analysis.voiced,
        level_hz=target.f0_hz,
        fall_octaves=target.fall_octaves,
        rise_fall_octaves=target.rise_fall_octaves,
        share=prosody.intonation_share,
    )
    return MappedFrames(grid, bandwidth, length, f0, analysis.voiced, envelopes, silent)


def map_f0(
    f0_hz: np.ndarray, voiced: np.ndarray, target: PseudoVoice, strength: float
) -> np.ndarray:
    """Voiced frames' log F0 moved from the clip's mean and spread to the target's."""
    if not voiced.any():
        return np.zeros_like(f0_hz)
    log_f0 = np.log2(np.where(voiced, f0_hz, 1.0))
    mean = float(np.mean(log_f0[voiced]))
    spread = float(np.std(log_f0[voiced])) if voiced.sum() >= 5 else target.f0_spread_octaves
    ratio = np.clip(
        (target.f0_spread_octaves / max(spread, 1e-3)) ** strength, *_SPREAD_RATIO_LIMITS
    )
    centre = mean + strength * (np.log2(target.f0_hz) - mean)
    mapped = np.exp2(centre + (log_f0 - mean) * ratio)
    return np.where(voiced, np.clip(mapped, F0_MIN_HZ, F0_MAX_HZ), 0.0)


def third_formant_warp(
    envelopes: np.ndarray, frequencies: np.ndarray, target_scale: float
) -> float:
    """The factor that moves the clip's median third formant (the strongest envelope peak in
    ``F3_SEARCH_HZ`` of each voiced frame) to the neutral tube's scaled by ``target_scale``,
    within ±``MAX_WARP_OCTAVES``."""
    inside = np.flatnonzero((frequencies >= F3_SEARCH_HZ[0]) & (frequencies <= F3_SEARCH_HZ[1]))
    best = inside[np.argmax(envelopes[:, inside], axis=1)]
    # A parabola through the peak and its neighbours places it between grid points.
    rows = np.arange(len(envelopes))
    left, centre, right = (
        envelopes[rows, best - 1],
        envelopes[rows, best],
        envelopes[rows, best + 1],
    )
    curvature = left - 2 * centre + right
    offset = np.where(curvature < 0, 0.5 * (left - right) / np.minimum(curvature, -1e-12), 0.0)
    step = float(frequencies[1] - frequencies[0])
    peaks = frequencies[best] + np.clip(offset, -0.5, 0.5) * step
    octaves = np.log2(NEUTRAL_F3_HZ * target_scale / float(np.median(peaks)))
    return float(np.exp2(np.clip(octaves, -MAX_WARP_OCTAVES, MAX_WARP_OCTAVES)))


def warp_envelopes(envelopes: np.ndarray, factor: float) -> np.ndarray:
    """Each envelope moved along frequency: the value at f goes to f·factor (edges held)."""
    bins = envelopes.shape[1]
    source = np.clip(np.arange(bins) / factor, 0, bins - 1)
    low = np.minimum(np.floor(source).astype(np.int64), bins - 2)
    weight = source - low
    return np.asarray(envelopes[:, low] * (1.0 - weight) + envelopes[:, low + 1] * weight)


def target_curve(
    level_from: np.ndarray, frequencies: np.ndarray, target: PseudoVoice, high_hz: float
) -> np.ndarray:
    """The target's long-term envelope: its tilt, through the mean level of ``level_from``
    between ``BAND_LOW_HZ`` and ``high_hz`` (held flat outside that band)."""
    band = (frequencies >= BAND_LOW_HZ) & (frequencies <= high_hz)
    octaves = np.log2(np.clip(frequencies, BAND_LOW_HZ, high_hz))
    level = float(np.mean(level_from[band]))
    centre = float(np.mean(octaves[band]))
    return np.asarray(level + target.tilt_db_per_octave * _DB * (octaves - centre))


def long_term_change(
    long_term: np.ndarray, frequencies: np.ndarray, target: PseudoVoice, high_hz: float
) -> np.ndarray:
    """What turns a clip's long-term envelope into the target's, held flat outside the band
    and at most ``MAX_LONG_TERM_CHANGE_DB`` either way."""
    change = target_curve(long_term, frequencies, target, high_hz) - long_term
    band = np.flatnonzero((frequencies >= BAND_LOW_HZ) & (frequencies <= high_hz))
    change[: band[0]] = change[band[0]]
    change[band[-1] + 1 :] = change[band[-1]]
    limit = MAX_LONG_TERM_CHANGE_DB * _DB
    return np.asarray(np.clip(change, -limit, limit))


def quiet_frames_floored(
    envelopes: np.ndarray,
    voiced: np.ndarray,
    frequencies: np.ndarray,
    target: PseudoVoice,
    high_hz: float,
    *,
    silent: np.ndarray | None = None,
) -> np.ndarray:
    """Quiet unvoiced frames (room and microphone noise) and ``silent`` ones replaced by one
    target-shaped floor ``FLOOR_BELOW_DB`` under the loudest frame."""
    band = (frequencies >= BAND_LOW_HZ) & (frequencies <= high_hz)
    level = envelopes[:, band].mean(axis=1)
    quiet = (~voiced) & (level < level.max() - QUIET_BELOW_DB * _DB)
    if silent is not None:
        quiet |= silent
    if not quiet.any():
        return envelopes
    loudest = envelopes[int(np.argmax(level))]
    out = envelopes.copy()
    out[quiet] = target_curve(loudest, frequencies, target, high_hz) - FLOOR_BELOW_DB * _DB
    return out


def _band_edge(frequencies: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """Gain in dB: flat below ``cutoff_hz``, a raised-cosine fall to −80 dB over 300 Hz."""
    fall = np.clip((frequencies - cutoff_hz) / 300.0, 0.0, 1.0)
    return np.asarray(-80.0 * 0.5 * (1 - np.cos(np.pi * fall)))


def _minimum_phase(envelopes: np.ndarray, grid: Grid) -> np.ndarray:
    """Minimum-phase frequency responses (``n_fft`` grid) whose power is ``exp(envelopes)``.

    Built from the folded cepstrum on a grid four times the envelope's (impulse responses of
    32 ms: formant resonances have died away by then), then read out by zero padding."""
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
    f0: np.ndarray, grid: Grid, length: int, target: PseudoVoice, rng: np.random.Generator
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
    f0_per_sample = np.exp(
        np.interp(positions, np.flatnonzero(voiced) * grid.hop, np.log(f0[voiced]))
    )
    phase = np.cumsum(f0_per_sample / grid.rate)
    pulse_at = np.diff(np.floor(phase), prepend=0.0) > 0
    pulses = np.where(pulse_at, np.sqrt(grid.rate / f0_per_sample), 0.0)
    size = sfft.next_fast_len(length, real=True)  # a clip's length may be a large prime
    frequencies = np.fft.rfftfreq(size, 1.0 / grid.rate)
    breathy = 0.02 + 0.98 / (1 + np.exp(-(frequencies - target.voicing_limit_hz) / 250.0))
    breath = sfft.irfft(sfft.rfft(noise, size) * np.sqrt(breathy), size)[:length]
    sample_voiced = voiced[np.minimum((positions + grid.hop // 2) // grid.hop, count - 1)]
    return np.asarray(np.where(sample_voiced, pulses + breath, noise), dtype=np.float32)


def _filter_and_add(
    excitation: np.ndarray, filters: np.ndarray, grid: Grid, length: int
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
