"""What a release's pseudo-voice does to timing, intonation and spectral dynamics (P3).

Mapping pitch level, range and the long-term spectrum onto one voice leaves what an attacker
who trains on released clips learns next: how long a speaker takes over a word, where the
voicing starts, the shape of the intonation contour and how far the spectrum moves from frame
to frame. The functions here take those from the release instead of the speaker, all on the
analysis frames (``policies.voice_analysis``) before synthesis:

- **timing** (``retimed``): the clip's speech (its loud frames) is resampled onto the release's
  one duration, after a fixed lead-in and before a fixed tail of silence; ``anchored`` also puts
  the voicing onset and offset at the target's shares of the speech, so voiced and unvoiced
  parts take the release's proportions rather than the speaker's;
- **intonation** (``stylised_f0``): the voiced frames' log F0 is drawn towards one stylised
  contour of the release (a fall with a small rise-fall, both drawn with the target);
- **spectral dynamics** (``spread_normalised``): each frequency's frame-to-frame spread of the
  log envelope is scaled to the target's, so the speaker's own pattern of movement is not kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.voice_analysis import Analysis

# Silence before and after the speech in every retimed clip.
LEAD_S = 0.05
# A frame is speech when its mean log envelope is within this of the loudest frame's.
SPEECH_WITHIN_DB = 35.0
_DB = float(np.log(10) / 10)  # natural-log power per dB
_SPREAD_RATIO_LIMITS = (0.5, 2.0)


@dataclass(frozen=True)
class Retimed:
    """An analysis moved onto the release's duration, and the frames that are lead-in or
    tail (silence, to be floored)."""

    analysis: Analysis
    silent: np.ndarray


def speech_span(envelopes: np.ndarray, voiced: np.ndarray) -> tuple[int, int]:
    """First and last frame of the clip's speech: loud frames and voiced ones."""
    level = envelopes.mean(axis=1)
    speech = (level > level.max() - SPEECH_WITHIN_DB * _DB) | voiced
    frames = np.flatnonzero(speech)
    return int(frames[0]), int(frames[-1])


def retimed(
    analysis: Analysis,
    count: int,
    *,
    hop_s: float,
    onset_share: float | None = None,
    offset_share: float | None = None,
) -> Retimed:
    """``analysis`` resampled to ``count`` frames: silence for ``LEAD_S``, the speech spread
    over what is left but ``LEAD_S``, silence again. With both shares, the first and last
    voiced frames land at those shares of the speech (piecewise-linear time map)."""
    lead = min(round(LEAD_S / hop_s), max(0, (count - 2) // 4))
    first, last = speech_span(analysis.envelopes, analysis.voiced)
    span = count - 2 * lead
    sources = [float(first), float(last + 1)]
    targets = [float(lead), float(lead + span)]
    voiced_frames = np.flatnonzero(analysis.voiced)
    if onset_share is not None and offset_share is not None and len(voiced_frames) >= 2:
        v0, v1 = float(voiced_frames[0]), float(voiced_frames[-1] + 1)
        sources = [sources[0], v0, v1, sources[1]]
        targets = [
            targets[0],
            lead + onset_share * span,
            lead + (1.0 - offset_share) * span,
            targets[1],
        ]
        # Keep the map increasing where the clip has no unvoiced onset or offset at all.
        keep = np.concatenate([[True], np.diff(sources) > 0])
        sources = list(np.asarray(sources)[keep])
        targets = list(np.asarray(targets)[keep])
    positions = np.arange(count, dtype=np.float64) + 0.5
    inside = (positions >= targets[0]) & (positions < targets[-1])
    source = np.interp(positions, targets, sources) - 0.5
    source = np.clip(source, 0.0, len(analysis.voiced) - 1.0)
    return Retimed(_resampled(analysis, source), ~inside)


def _resampled(analysis: Analysis, source: np.ndarray) -> Analysis:
    """Frames read at fractional ``source`` positions: envelopes and log F0 interpolated
    linearly (log F0 only between two voiced frames), voicing from the nearest frame."""
    frames = len(analysis.voiced)
    low = np.minimum(np.floor(source).astype(np.int64), max(frames - 2, 0))
    high = np.minimum(low + 1, frames - 1)
    weight = (source - low)[:, None]
    envelopes = analysis.envelopes[low] * (1.0 - weight) + analysis.envelopes[high] * weight
    nearest = np.clip(np.rint(source).astype(np.int64), 0, frames - 1)
    voiced = analysis.voiced[nearest]
    both = analysis.voiced[low] & analysis.voiced[high]
    log_f0 = np.log(np.where(analysis.voiced, analysis.f0_hz, 1.0))
    between = np.exp(log_f0[low] * (1.0 - weight[:, 0]) + log_f0[high] * weight[:, 0])
    f0 = np.where(both, between, analysis.f0_hz[nearest])
    return Analysis(f0_hz=np.where(voiced, f0, 0.0), voiced=voiced, envelopes=envelopes)


def stylised_f0(
    f0_hz: np.ndarray,
    voiced: np.ndarray,
    *,
    level_hz: float,
    fall_octaves: float,
    rise_fall_octaves: float,
    share: float,
) -> np.ndarray:
    """Voiced frames' log F0 moved ``share`` of the way to the release's contour: a fall of
    ``fall_octaves`` across the clip's voicing with a rise-fall of ``rise_fall_octaves``,
    centred on ``level_hz``."""
    frames = np.flatnonzero(voiced)
    if share <= 0.0 or len(frames) < 2:
        return f0_hz
    u = (frames - frames[0]) / float(frames[-1] - frames[0])
    bump = np.sin(np.pi * u) - 2.0 / np.pi  # mean zero over the voicing
    contour = np.log2(level_hz) + fall_octaves * (0.5 - u) + rise_fall_octaves * bump
    out = f0_hz.copy()
    out[frames] = np.exp2((1.0 - share) * np.log2(f0_hz[frames]) + share * contour)
    return out


def spread_normalised(
    envelopes: np.ndarray, reference: np.ndarray, *, spread_db: float, share: float
) -> np.ndarray:
    """Each frequency's deviation from the ``reference`` frames' mean scaled so its spread
    over those frames moves ``share`` of the way (in log) to ``spread_db``."""
    if share <= 0.0 or reference.sum() < 3:
        return envelopes
    mean = envelopes[reference].mean(axis=0)
    spread = np.maximum(envelopes[reference].std(axis=0), 1e-3)
    ratio = np.clip((spread_db * _DB / spread) ** share, *_SPREAD_RATIO_LIMITS)
    return np.asarray(mean + (envelopes - mean) * ratio)
