"""The audio sanitizer: untrusted bytes in, the service's own FLAC out.

Upholds P7: the upload is decoded to samples, downmixed to mono, resampled to the policy's fixed
rate and re-encoded as 16-bit FLAC in the canonical form of ``policies.flac``, so no tag,
picture, cue point, chunk or encoder fingerprint of the upload survives. libsndfile decodes what
it reads fastest (WAV, FLAC, Ogg Vorbis, MP3) and FFmpeg the rest, such as Opus, AAC, AMR and
WebM (``ingest.containers``), under the same bounds. Bounds are checked from the header before the
stream is decoded, and decoding never reads more frames than the longest accepted clip, so a
tiny file that claims hours of audio costs nothing. A clip without voice activity is refused
(P6, see ``ingest.speech``) before it is encoded. ``sanitize_audio`` runs in a worker process
(see ``ingest.decoder``): a crash in the native decoder cannot take the API process down.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from core.errors import InvalidAudio, UnsupportedAudio
from ingest import containers
from ingest.recordings import fingerprint_bytes, samples_digest
from ingest.speech import require_speech
from policies import flac

MAX_CHANNELS = 8
SILENCE_DBFS = -120.0


@dataclass(frozen=True)
class AudioLimits:
    """The policy's audio bounds, small enough to send to a worker process."""

    min_duration_s: float
    max_duration_s: float
    min_sample_rate: int
    max_sample_rate: int
    output_sample_rate: int
    min_speech_s: float


@dataclass(frozen=True)
class SanitizedClip:
    flac: bytes
    duration_s: float
    sample_rate: int
    loudness_dbfs: float
    # The upload's own rate: the release limits every clip to its bucket's narrowest band.
    source_sample_rate: int
    # SHA-256 of the canonical samples and the recording's robust print (P6: no duplicates).
    samples_digest: bytes
    fingerprint: bytes


def sanitize_audio(data: bytes, limits: AudioLimits) -> SanitizedClip:
    """Decode ``data`` within ``limits`` and re-encode it; raises UnsupportedAudio/InvalidAudio."""
    samples, sample_rate = _decode_within_limits(data, limits)
    # Clip before mixing and resampling: a float stream may hold finite values near 3.4e38
    # whose sum overflows to inf, which resampling turns into NaN and the encoder refuses.
    np.clip(samples, -1.0, 1.0, out=samples)
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if len(mono) / sample_rate < limits.min_duration_s:
        raise InvalidAudio(f"the clip is shorter than {limits.min_duration_s} s")
    # The speech check hears the decoded samples at their own rate: it analyses an 8 kHz copy,
    # which needs no resampling at all for the most common upload rate.
    require_speech(mono, sample_rate, min_speech_s=limits.min_speech_s)
    # The print analyses an 8 kHz copy too: made from the decoded samples, an 8 kHz upload
    # needs no resampling for it either.
    fingerprint = fingerprint_bytes(mono.astype(np.float32, copy=False), sample_rate)
    if sample_rate != limits.output_sample_rate:
        mono = soxr.resample(mono, sample_rate, limits.output_sample_rate, quality="HQ")
    mono = np.clip(mono, -1.0, 1.0, out=mono).astype(np.float32, copy=False)
    duration_s = len(mono) / limits.output_sample_rate
    return SanitizedClip(
        # The auditor re-encodes every released clip the same way and compares bytes (P7).
        flac=flac.encode_samples(mono, limits.output_sample_rate),
        duration_s=round(duration_s, 3),
        sample_rate=limits.output_sample_rate,
        loudness_dbfs=rms_dbfs(mono),
        source_sample_rate=sample_rate,
        samples_digest=samples_digest(mono),
        fingerprint=fingerprint,
    )


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (silence floors at -120)."""
    if samples.size == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if rms <= 0.0:
        return SILENCE_DBFS
    return round(max(SILENCE_DBFS, 20.0 * math.log10(rms)), 2)


def _decode_within_limits(data: bytes, limits: AudioLimits) -> tuple[np.ndarray, int]:
    if _is_ogg_opus(data):  # FFmpeg decodes Opus ~2.5× faster than libsndfile
        return _decode_with_ffmpeg(data, limits)
    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except Exception:  # not a format libsndfile reads: FFmpeg's turn, within the same bounds
        return _decode_with_ffmpeg(data, limits)
    with handle:
        sample_rate = int(handle.samplerate)
        _check_header(handle, sample_rate, limits)
        max_frames = math.ceil(limits.max_duration_s * sample_rate)
        try:
            # One frame beyond the limit is enough to tell that a header understated the length.
            samples = handle.read(frames=max_frames + 1, dtype="float32", always_2d=True)
        except Exception:
            raise UnsupportedAudio("the audio stream is damaged") from None
    if len(samples) > max_frames:
        raise InvalidAudio(f"the clip is longer than {limits.max_duration_s} s")
    return _finite(samples), sample_rate


def _decode_with_ffmpeg(data: bytes, limits: AudioLimits) -> tuple[np.ndarray, int]:
    samples, sample_rate = containers.decode(
        data,
        max_channels=MAX_CHANNELS,
        min_sample_rate=limits.min_sample_rate,
        max_sample_rate=limits.max_sample_rate,
        max_duration_s=limits.max_duration_s,
    )
    return _finite(samples), sample_rate


def _is_ogg_opus(data: bytes) -> bool:
    """An Ogg stream whose first page opens an Opus stream (its ``OpusHead`` packet)."""
    return data.startswith(b"OggS") and b"OpusHead" in data[:64]


def _finite(samples: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(samples)):
        raise UnsupportedAudio("the audio stream holds invalid samples")
    return samples


def _check_header(handle: sf.SoundFile, sample_rate: int, limits: AudioLimits) -> None:
    if not limits.min_sample_rate <= sample_rate <= limits.max_sample_rate:
        raise InvalidAudio(
            f"sample rate {sample_rate} Hz is outside "
            f"{limits.min_sample_rate}–{limits.max_sample_rate} Hz"
        )
    if not 1 <= handle.channels <= MAX_CHANNELS:
        raise InvalidAudio(f"{handle.channels} channels; at most {MAX_CHANNELS} are accepted")
    declared_s = handle.frames / sample_rate if handle.frames > 0 else 0.0
    if declared_s > limits.max_duration_s:
        raise InvalidAudio(f"the clip is longer than {limits.max_duration_s} s")
    if handle.frames <= 0 or declared_s < limits.min_duration_s:
        raise InvalidAudio(f"the clip is shorter than {limits.min_duration_s} s")
