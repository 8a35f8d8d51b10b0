"""Voice anonymization at release: a released voice that a speaker encoder cannot link (P7).

The voice is a biometric: removing names and metadata does not stop a speaker encoder from
matching a released clip to another recording of the same person. With the policy's
``voice_anonymization`` set to ``pseudo_voice``, every clip of a release is mapped onto one
voice drawn for that release when its anonymizer is built (``policies.pseudo_voice``); the
policy's ``voice_pseudo_timing`` and ``voice_pseudo_averaging`` also give them the release's one
duration and mix the release's mean spectral frames into each (``policies.pseudo_prosody``). With
``mcadams``, every released clip is transformed by McAdams-coefficient LPC pole warping (the
VoicePrivacy Challenge's signal-processing baseline): each 20 ms frame's spectral envelope is
modelled by linear prediction, the angle φ of every complex pole is moved to φ^α, and the frame
is re-synthesised from its own excitation through the warped envelope. Formants move, the
excitation (pitch, timing, voicing) and the duration stay.

α is drawn for every clip from the policy's range ``[voice_mcadams_alpha_min,
voice_mcadams_alpha_max]`` by a generator seeded from ``secrets`` and is never stored or
returned, so an attacker who runs this same code (lazy-informed) cannot reproduce a clip's
transform. Only tests and research runs (``chorus audio anonymize --seed``) pass a seeded
generator.

The output keeps P7: it is clipped and quantised as the ingest sanitizer does and encoded by
``flac.encode_samples``, so the released bytes are the canonical FLAC of their own samples.
Its level is matched to the original's, so the released loudness statistics stay true.

The transform is vectorised over frames (batched Levinson recursion, batched companion-matrix
eigenvalues, FFT-domain filtering and overlap-add): no Python loop runs per frame or sample.
"""

from __future__ import annotations

import collections
import hashlib
import io
import secrets
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import get_args

import numpy as np
import soundfile as sf

from core.errors import UnsupportedAudio
from policies import flac
from policies.policy import Policy, VoiceAnonymization
from policies.pseudo_voice import (
    MappedFrames,
    Prosody,
    PseudoVoice,
    Timing,
    convert,
    draw_pseudo_voice,
    mapped_frames,
    synthesise,
)

VOICE_METHODS: tuple[str, ...] = get_args(VoiceAnonymization)
# The mapped envelopes an averaging release keeps between its two passes (larger releases
# analyse the rest again when they write them).
KEPT_MAPPED_BYTES = 64 << 20


@dataclass(frozen=True, eq=False)
class MappedClip:
    """One clip of a release mapped onto its voice, keyed by the SHA-256 of its bytes, with
    its upload's RMS level (the release matches it)."""

    digest: bytes
    rate: int
    level: float
    frames: MappedFrames


FRAME_S = 0.020
HOP_S = 0.010
LPC_ORDER = 20
# A pole this close to the real axis is treated as real: McAdams warps only complex pairs.
_REAL_POLE = 1e-9


@dataclass(frozen=True)
class VoiceAnonymizer:
    """The release's voice transform, built once from the policy in force.

    Ranges are (low, high); ``pitch_octaves`` and ``formant_octaves`` are shift sizes whose
    direction (up or down, the same for both) is drawn per clip too. For ``pseudo_voice`` the
    release's one target voice is drawn when the anonymizer is built (``from_policy``, once per
    release) and lives only in this object; ``strength`` below 1 maps part of the way and
    ``vocal_tract_share`` adds a formant-scale warp (both for the benchmark's curve)."""

    method: VoiceAnonymization
    alpha: tuple[float, float] = (0.7, 0.9)
    pitch_octaves: tuple[float, float] = (0.4, 0.8)
    formant_octaves: tuple[float, float] = (0.1, 0.2)
    strength: float = 1.0
    vocal_tract_share: float = 0.0
    timing: Timing | None = None
    intonation_share: float = 0.0
    spread_share: float = 0.0
    averaging_share: float = 0.0
    target: PseudoVoice | None = field(default=None, repr=False, compare=False)
    # The one duration every clip of the release is retimed to (``timing``), set per release.
    duration_s: float | None = field(default=None, compare=False)
    # The release's mean mapped envelopes per sample rate (``averaged_over``), and the mapped
    # clips that pass kept (by the SHA-256 of their bytes): memory only, like the target.
    release_envelopes: dict[int, np.ndarray] | None = field(default=None, repr=False, compare=False)
    kept_mapped: dict[bytes, MappedClip] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.method == "pseudo_voice" and self.target is None:
            object.__setattr__(self, "target", draw_pseudo_voice(fresh_generator()))

    @classmethod
    def from_policy(
        cls, policy: Policy, *, rng: np.random.Generator | None = None
    ) -> VoiceAnonymizer:
        """The transform for one release; a ``pseudo_voice`` target is drawn here, from the
        CSPRNG unless ``rng`` is given (tests and research only)."""
        voice = cls(
            method=policy.voice_anonymization,
            alpha=(policy.voice_mcadams_alpha_min, policy.voice_mcadams_alpha_max),
            pitch_octaves=(policy.voice_pitch_octaves_min, policy.voice_pitch_octaves_max),
            formant_octaves=(policy.voice_formant_octaves_min, policy.voice_formant_octaves_max),
            timing=None if policy.voice_pseudo_timing == "own" else policy.voice_pseudo_timing,
            averaging_share=policy.voice_pseudo_averaging,
        )
        return voice.for_release(rng)

    def for_release(self, rng: np.random.Generator | None = None) -> VoiceAnonymizer:
        """This transform with a fresh release target (``pseudo_voice``; others draw per clip)."""
        if self.method != "pseudo_voice":
            return self
        generator = rng if rng is not None else fresh_generator()
        return replace(self, target=draw_pseudo_voice(generator))

    def retimed_to(self, duration_s: float | None) -> VoiceAnonymizer:
        """This transform releasing every clip at ``duration_s`` (the release's median upload
        duration) when it ``retimes``; unchanged otherwise."""
        if not self.retimes or duration_s is None:
            return self
        if not 0.0 < duration_s < float("inf"):
            raise ValueError(f"a release duration of {duration_s} s is not a duration")
        return replace(self, duration_s=duration_s)

    @property
    def averages(self) -> bool:
        """Whether the release's clips are mixed with their mean (``averaged_over`` first)."""
        return self.retimes and self.duration_s is not None and self.averaging_share > 0.0

    def mapped_clip(self, data: bytes) -> MappedClip | None:
        """A clip mapped onto the release's voice and duration (what ``averaged_over``
        averages); None for an empty clip."""
        assert self.target is not None
        samples, rate = decode_mono(data)
        if len(samples) == 0:
            return None
        frames = mapped_frames(
            samples,
            rate,
            self.target,
            strength=self.strength,
            vocal_tract_share=self.vocal_tract_share,
            prosody=self.prosody,
        )
        return MappedClip(hashlib.sha256(data).digest(), rate, _rms(samples), frames)

    def averaged_over(self, clips: Iterable[bytes]) -> VoiceAnonymizer:
        """This transform with the mean of the release's mapped envelopes (one pass over its
        ``clips``), which ``averaging_share`` mixes into every clip; unchanged unless it
        ``averages``."""
        if not self.averages:
            return self
        return self.with_release_mean(self.mapped_clip(data) for data in clips)

    def with_release_mean(self, mapped: Iterable[MappedClip | None]) -> VoiceAnonymizer:
        """This transform with the mean, per sample rate, of the mapped envelopes of every
        clip of the release (``mapped_clip``, computed by the caller, e.g. in its read
        workers). Up to ``KEPT_MAPPED_BYTES`` of the mapped clips are kept in memory, so
        ``released_audio`` does not analyse them again."""
        sums: dict[int, np.ndarray] = {}
        counts: collections.Counter[int] = collections.Counter()
        kept: dict[bytes, MappedClip] = {}
        kept_bytes = 0
        for item in mapped:
            if item is None:
                continue
            envelopes = item.frames.envelopes
            sums[item.rate] = sums[item.rate] + envelopes if item.rate in sums else envelopes.copy()
            counts[item.rate] += 1
            if kept_bytes + envelopes.nbytes <= KEPT_MAPPED_BYTES:
                kept[item.digest] = item
                kept_bytes += envelopes.nbytes
        means = {rate: total / counts[rate] for rate, total in sums.items()}
        return replace(self, release_envelopes=means, kept_mapped=kept)

    @property
    def prosody(self) -> Prosody:
        """What the pseudo-voice takes from the release besides the voice."""
        return Prosody(
            duration_s=self.duration_s if self.timing is not None else None,
            timing=self.timing or "uniform",
            intonation_share=self.intonation_share,
            spread_share=self.spread_share,
            averaging_share=self.averaging_share,
        )

    @property
    def retimes(self) -> bool:
        """Whether released clips take the release's duration instead of their own."""
        return self.method == "pseudo_voice" and self.timing is not None

    def manifest_entry(self) -> dict[str, object]:
        """What a release's manifest says about the transform: the method and its ranges."""
        if self.method == "mcadams":
            return {"method": self.method, "alpha_range": list(self.alpha)}
        if self.method == "world":
            return {
                "method": self.method,
                "pitch_octaves_range": list(self.pitch_octaves),
                "formant_octaves_range": list(self.formant_octaves),
            }
        if self.method == "pseudo_voice" and self.retimes:
            return {
                "method": self.method,
                "timing": self.timing,
                "averaging_share": self.averaging_share,
            }
        return {"method": self.method}

    @property
    def enabled(self) -> bool:
        return self.method != "none"

    def released_audio(self, data: bytes, *, rng: np.random.Generator | None = None) -> bytes:
        """A pending clip's FLAC bytes → the bytes released for it.

        ``none`` returns ``data`` unchanged; the others decode, transform with freshly drawn
        parameters and return the canonical FLAC of the result. ``rng`` is for tests and
        research only.
        """
        if not self.enabled:
            return data
        generator = rng if rng is not None else fresh_generator()
        kept = self.kept_mapped.get(hashlib.sha256(data).digest()) if self.kept_mapped else None
        if kept is not None:
            assert self.target is not None
            transformed = synthesise(
                kept.frames,
                self.target,
                rng=generator,
                release_envelopes=(self.release_envelopes or {}).get(kept.rate),
                averaging_share=self.averaging_share,
            )
            return flac.encode_samples(_scaled_to(transformed, kept.level), kept.rate)
        samples, sample_rate = decode_mono(data)
        if self.method == "pseudo_voice":
            assert self.target is not None  # drawn in __post_init__ at the latest
            transformed = convert(
                samples,
                sample_rate,
                self.target,
                rng=generator,
                strength=self.strength,
                vocal_tract_share=self.vocal_tract_share,
                prosody=self.prosody,
                release_envelopes=(self.release_envelopes or {}).get(sample_rate),
            )
        elif self.method == "mcadams":
            alpha = float(generator.uniform(*self.alpha))
            transformed = mcadams_transform(samples, sample_rate, alpha=alpha)
        else:
            direction = 1.0 if generator.random() < 0.5 else -1.0
            transformed = world_transform(
                samples,
                sample_rate,
                pitch_octaves=direction * float(generator.uniform(*self.pitch_octaves)),
                formant_octaves=direction * float(generator.uniform(*self.formant_octaves)),
            )
        return flac.encode_samples(match_level(transformed, samples), sample_rate)


def fresh_generator() -> np.random.Generator:
    """A generator seeded from the operating system's CSPRNG: nothing to store, nothing to
    reproduce."""
    return np.random.default_rng(secrets.randbits(128))


def decode_mono(data: bytes) -> tuple[np.ndarray, int]:
    """Float64 samples of a mono (or downmixed) audio file and its sample rate."""
    try:
        samples, sample_rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, TypeError, ValueError):
        raise UnsupportedAudio("the clip does not decode as audio") from None
    return samples.mean(axis=1), int(sample_rate)


def match_level(samples: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``samples`` scaled to the root-mean-square level of ``reference``."""
    return _scaled_to(samples, _rms(reference))


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples)))) if samples.size else 0.0


def _scaled_to(samples: np.ndarray, level: float) -> np.ndarray:
    own = _rms(samples)
    if own <= 0.0:
        return samples
    return np.asarray(samples * (level / own))


def mcadams_transform(samples: np.ndarray, sample_rate: int, *, alpha: float) -> np.ndarray:
    """McAdams-coefficient pole warping of ``samples``; same length, same rate."""
    if not 0.0 < alpha <= 2.0:
        raise ValueError(f"McAdams coefficient {alpha} is outside (0, 2]")
    frame = int(FRAME_S * sample_rate)
    hop = int(HOP_S * sample_rate)
    n_fft = 1 << int(np.ceil(np.log2(2 * frame)))
    length = len(samples)
    # Pad so that every sample is covered by two frames, then cut the padding off again.
    padded = np.concatenate([np.zeros(frame), samples, np.zeros(frame + hop)])
    n_frames = 1 + (len(padded) - frame) // hop
    starts = np.arange(n_frames) * hop
    window = np.sqrt(np.hanning(frame + 2)[1:-1])  # periodic-ish, never zero inside
    frames = padded[starts[:, None] + np.arange(frame)] * window

    spectrum = np.fft.rfft(frames, n_fft, axis=1)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2, n_fft, axis=1)[:, : LPC_ORDER + 1]
    lpc = levinson(autocorrelation, LPC_ORDER)
    warped = warp_poles(lpc, alpha)
    envelope_ratio = np.fft.rfft(lpc, n_fft, axis=1) / np.fft.rfft(warped, n_fft, axis=1)
    rebuilt = np.fft.irfft(spectrum * envelope_ratio, n_fft, axis=1)[:, :frame] * window

    out = np.zeros(len(padded))
    norm = np.zeros(len(padded))
    np.add.at(out, starts[:, None] + np.arange(frame), rebuilt)
    np.add.at(norm, starts[:, None] + np.arange(frame), np.broadcast_to(window**2, rebuilt.shape))
    out = out / np.maximum(norm, 1e-3)
    return np.asarray(out[frame : frame + length])


def levinson(autocorrelation: np.ndarray, order: int) -> np.ndarray:
    """Prediction polynomials (rows ``[1, a1, …, a_order]``) of each autocorrelation row."""
    r = autocorrelation.astype(np.float64).copy()
    # A little white noise (−60 dB) keeps silent and near-silent frames well conditioned.
    r[:, 0] = r[:, 0] * (1.0 + 1e-6) + 1e-12
    n = r.shape[0]
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    error = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = np.einsum("nj,nj->n", a[:, :i], r[:, i:0:-1])
        k = -acc / error
        a[:, 1 : i + 1] = a[:, 1 : i + 1] + k[:, None] * a[:, i - 1 :: -1][:, :i]
        error = error * (1.0 - k**2)
    return a


def warp_poles(lpc: np.ndarray, alpha: float) -> np.ndarray:
    """Polynomials whose complex poles have angle φ^α (magnitudes kept); real poles stay."""
    n, width = lpc.shape
    order = width - 1
    companion = np.zeros((n, order, order))
    companion[:, 0, :] = -lpc[:, 1:]
    companion[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    poles = np.linalg.eigvals(companion)
    angle = np.angle(poles)
    complex_pole = np.abs(poles.imag) > _REAL_POLE
    new_angle = np.where(
        complex_pole, np.sign(angle) * np.minimum(np.abs(angle) ** alpha, np.pi), angle
    )
    new_poles = np.abs(poles) * np.exp(1j * new_angle)
    coefficients = np.zeros((n, width), dtype=np.complex128)
    coefficients[:, 0] = 1.0
    for j in range(order):
        coefficients[:, 1:] = coefficients[:, 1:] - new_poles[:, j, None] * coefficients[:, :-1]
    return np.asarray(coefficients.real)


WORLD_FRAME_MS = 5.0


def world_transform(
    samples: np.ndarray, sample_rate: int, *, pitch_octaves: float, formant_octaves: float
) -> np.ndarray:
    """Pitch and formant shift through the WORLD vocoder; same length, same rate.

    F0 is estimated (DIO refined by StoneMask), scaled by 2^pitch_octaves; the spectral
    envelope and aperiodicity are stretched along frequency by 2^formant_octaves (one
    interpolation for all frames), and the clip is re-synthesised.
    """
    with warnings.catch_warnings():
        # pyworld's own import touches the deprecated pkg_resources; nothing of ours is at fault.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        import pyworld

    x = np.ascontiguousarray(samples, dtype=np.float64)
    f0, times = pyworld.dio(x, sample_rate, frame_period=WORLD_FRAME_MS)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate)
    aperiodicity = pyworld.d4c(x, f0, times, sample_rate)
    envelope = stretch_frequency(envelope, 2.0**formant_octaves)
    aperiodicity = stretch_frequency(aperiodicity, 2.0**formant_octaves)
    out = pyworld.synthesize(
        f0 * 2.0**pitch_octaves, envelope, aperiodicity, sample_rate, frame_period=WORLD_FRAME_MS
    )
    out = out[: len(x)]
    return np.pad(out, (0, len(x) - len(out)))


def stretch_frequency(spectra: np.ndarray, factor: float) -> np.ndarray:
    """Each row (a spectrum over frequency bins) moved so that bin f takes the value at f/factor
    (linear interpolation, edges held)."""
    bins = spectra.shape[1]
    source = np.clip(np.arange(bins) / factor, 0, bins - 1)
    low = np.minimum(np.floor(source).astype(np.int64), bins - 2)
    weight = source - low
    return np.ascontiguousarray(spectra[:, low] * (1.0 - weight) + spectra[:, low + 1] * weight)
