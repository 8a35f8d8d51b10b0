"""Decoding of what phones and browsers record, through FFmpeg's libraries (PyAV).

libsndfile (``soundfile``) reads WAV, FLAC, Ogg Vorbis and MP3 fastest and stays first for
them; this module reads the rest: AAC in MP4/M4A or ADTS, AMR-NB/WB in 3GP or raw, Opus in Ogg
(2.5× faster than libsndfile) or WebM, Vorbis in WebM, CAF. It serves P7 as the sanitizer
does: it hands over samples only, and the sanitizer re-encodes them.

Untrusted input meets a wide library here, so its reach is cut down before anything is read:
only the demuxers in ``DEMUXERS`` may open the bytes (no playlist, concat or image demuxer,
which would open other files or URLs), any nested open is refused outright, and only the audio
codecs in ``CODECS`` are decoded. The bounds are the sanitizer's: rate and channels from the
header and again from every frame, a declared length past the limit refused before decoding,
and never more frames decoded than the longest accepted clip, so a tiny file that claims hours
costs nothing. The worker's decode alarm (``ingest.service``) bounds the time.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction
from typing import Any, NoReturn

import av
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream

from core.errors import InvalidAudio, UnsupportedAudio

# FFmpeg demuxer names (av_match_list matches any name of a demuxer's comma-separated list).
DEMUXERS = (
    "mov",
    "matroska",
    "webm",
    "ogg",
    "mp3",
    "aac",
    "amr",
    "amrnb",
    "amrwb",
    "caf",
    "flac",
    "wav",
)
# Demuxers whose files state their exact length (sample tables, edit lists, packet tables).
EXACT_LENGTH_DEMUXERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "caf"})
# Decoder names: native and library builds of the same codec.
CODECS = frozenset(
    {
        "aac",
        "aac_fixed",
        "opus",
        "libopus",
        "vorbis",
        "libvorbis",
        "mp3",
        "mp3float",
        "flac",
        "alac",
        "amrnb",
        "amrwb",
        "libopencore_amrnb",
        "libopencore_amrwb",
    }
)
# Sample formats (planar or packed): their dtype, and the offset and divisor mapping them to
# [-1, 1).
_SAMPLE_FORMATS: dict[str, tuple[type[np.generic], float, float]] = {
    "flt": (np.float32, 0.0, 1.0),
    "dbl": (np.float64, 0.0, 1.0),
    "u8": (np.uint8, 128.0, 128.0),
    "s16": (np.int16, 0.0, 2.0**15),
    "s32": (np.int32, 0.0, 2.0**31),
    "s64": (np.int64, 0.0, 2.0**63),
}


def decode(
    data: bytes,
    *,
    max_channels: int,
    min_sample_rate: int,
    max_sample_rate: int,
    max_duration_s: float,
) -> tuple[np.ndarray, int]:
    """Samples as float32 ``(frames, channels)`` and their rate; raises UnsupportedAudio or
    InvalidAudio. At most ``max_duration_s`` of audio is decoded (one frame more is refused)."""
    try:
        container = av.open(
            io.BytesIO(data),
            mode="r",
            options={"format_whitelist": ",".join(DEMUXERS)},
            io_open=_refuse_nested_open,
        )
    except Exception:  # FFmpeg refuses many ways; the reason may quote the upload
        raise UnsupportedAudio("the audio could not be decoded") from None
    with container:
        if not container.streams.audio:
            raise UnsupportedAudio("the upload holds no audio stream")
        stream = container.streams.audio[0]  # other streams are demuxed past, not decoded
        sample_rate, channels = _check_header(
            stream,
            max_channels=max_channels,
            min_sample_rate=min_sample_rate,
            max_sample_rate=max_sample_rate,
        )
        declared = _declared_frames(container, stream, sample_rate)
        if declared is not None and declared > max_duration_s * sample_rate:
            raise InvalidAudio(f"the clip is longer than {max_duration_s} s")
        max_frames = math.ceil(max_duration_s * sample_rate)
        samples = _read_frames(container, stream, sample_rate, channels, max_frames)
    if len(samples) > max_frames:
        raise InvalidAudio(f"the clip is longer than {max_duration_s} s")
    if declared is not None and 0 < declared < len(samples):
        # The container's own length ends the codec's padding, as players do (gapless).
        samples = samples[:declared]
    return samples, sample_rate


def _refuse_nested_open(url: str, flags: int, options: dict[str, Any]) -> NoReturn:
    raise PermissionError("an upload may not open other files")


def _check_header(
    stream: AudioStream, *, max_channels: int, min_sample_rate: int, max_sample_rate: int
) -> tuple[int, int]:
    context = stream.codec_context
    if context is None or (context.name not in CODECS and not context.name.startswith("pcm_")):
        raise UnsupportedAudio("the audio codec is not accepted")
    sample_rate = int(context.sample_rate or 0)
    channels = int(context.channels or 0)
    _check_bounds(sample_rate, channels, max_channels, min_sample_rate, max_sample_rate)
    return sample_rate, channels


def _check_bounds(
    sample_rate: int, channels: int, max_channels: int, min_rate: int, max_rate: int
) -> None:
    if not min_rate <= sample_rate <= max_rate:
        raise InvalidAudio(f"sample rate {sample_rate} Hz is outside {min_rate}–{max_rate} Hz")
    if not 1 <= channels <= max_channels:
        raise InvalidAudio(f"{channels} channels; at most {max_channels} are accepted")


def _declared_frames(
    container: av.container.InputContainer, stream: AudioStream, sample_rate: int
) -> int | None:
    """The length the container states, in frames at ``sample_rate``; None where it states none
    or FFmpeg only estimates one from the bitrate (ADTS, MP3), which may fall short."""
    if container.format.name not in EXACT_LENGTH_DEMUXERS:
        return None
    if stream.duration is not None and stream.duration > 0 and stream.time_base is not None:
        seconds = Fraction(stream.duration) * stream.time_base
    elif container.duration is not None and container.duration > 0:
        seconds = Fraction(container.duration, av.time_base)
    else:
        return None
    return round(seconds * sample_rate)


def _read_frames(
    container: av.container.InputContainer,
    stream: AudioStream,
    sample_rate: int,
    channels: int,
    max_frames: int,
) -> np.ndarray:
    """Decode into one preallocated buffer; stop one frame past ``max_frames``."""
    buffer = np.empty((max_frames + 1, channels), dtype=np.float32)
    filled = 0
    try:
        for frame in container.decode(stream):
            if frame.sample_rate != sample_rate or frame.layout.nb_channels != channels:
                raise UnsupportedAudio("the audio changes its rate or channels mid-stream")
            take = min(frame.samples, len(buffer) - filled)
            _copy_into(frame, buffer[filled : filled + take], channels)
            filled += take
            if filled > max_frames:
                break
    except (UnsupportedAudio, InvalidAudio):
        raise
    except Exception:  # a damaged packet, or the library's refusal mid-stream
        raise UnsupportedAudio("the audio stream is damaged") from None
    return buffer[:filled]


def _copy_into(frame: AudioFrame, out: np.ndarray, channels: int) -> None:
    """Write the first ``len(out)`` samples of ``frame`` into ``out`` (float32, frames ×
    channels), read straight from its planes: whatever its sample format, no copy between."""
    name = frame.format.name.rstrip("p")
    dtype, offset, scale = _SAMPLE_FORMATS.get(name, (None, 0.0, 1.0))
    if dtype is None:
        raise UnsupportedAudio("the audio's sample format is not accepted")
    count = len(out)
    if frame.format.is_planar:
        sources = [
            np.frombuffer(memoryview(plane), dtype=dtype, count=count) for plane in frame.planes
        ]
        sources = sources[:channels]
    else:
        packed = np.frombuffer(memoryview(frame.planes[0]), dtype=dtype, count=count * channels)
        sources = [packed[channel::channels] for channel in range(channels)]
    for channel, source in enumerate(sources):
        column = out[:, channel]
        column[:] = source
        if offset:
            column -= np.float32(offset)
        if scale != 1.0:
            column /= np.float32(scale)
