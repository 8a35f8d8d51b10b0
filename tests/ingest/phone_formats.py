"""Recordings in the formats phones and browsers make, encoded here from real FSDD clips.

Every file is made by FFmpeg's own encoders as the PyAV wheel ships them (AAC, Opus, Vorbis,
MP3, AMR-NB through libopencore, FLAC, PCM), so the suite needs nothing beside the repo. FFmpeg
cannot mux AAC into CAF, so ``caf_aac`` writes that file's chunks around the encoder's packets.
No AMR-WB encoder ships in the wheel (nor in Debian's ffmpeg), so ``amr_wb_frames`` builds an
AMR-WB file frame by frame: valid frame headers around random payload bits, which the decoder
must read to the right length.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import soundfile as sf
import soxr
from av.audio.stream import AudioStream


@dataclass(frozen=True)
class PhoneFormat:
    """One way an app records: an FFmpeg muxer, an encoder, and what it forces on the audio."""

    muxer: str
    encoder: str
    sample_rate: int | None = None  # the encoder's own rate, when it has one
    layout: str = "mono"
    bit_rate: int | None = None  # what the app would ask for; FFmpeg's defaults are lower
    # Samples the codec may add at the start (priming) and end (frame padding) that the
    # container cannot say to drop: ADTS has no edit list, for instance.
    padding_s: float = 0.03
    media_type: str = "application/octet-stream"


PHONE_FORMATS: dict[str, PhoneFormat] = {
    # iOS AVAudioRecorder, Android MediaRecorder (MPEG_4/AAC), Safari's MediaRecorder
    "m4a": PhoneFormat("ipod", "aac", bit_rate=64000, media_type="audio/mp4"),
    "m4a-alac": PhoneFormat("ipod", "alac", media_type="audio/mp4"),  # kAudioFormatAppleLossless
    "mp4": PhoneFormat("mp4", "aac", bit_rate=64000, media_type="audio/mp4"),
    # Android MediaRecorder AAC_ADTS
    "aac": PhoneFormat("adts", "aac", bit_rate=64000, padding_s=0.3, media_type="audio/aac"),
    # Android MediaRecorder THREE_GPP / AMR_NB
    "3gp": PhoneFormat("3gp", "libopencore_amrnb", 8000, bit_rate=12200, media_type="audio/3gpp"),
    "3gp-aac": PhoneFormat("3gp", "aac", bit_rate=64000, media_type="audio/3gpp"),
    "amr": PhoneFormat("amr", "libopencore_amrnb", 8000, bit_rate=12200, media_type="audio/amr"),
    # Chrome and Firefox MediaRecorder; Android OGG/OPUS
    "webm": PhoneFormat("webm", "libopus", 48000, bit_rate=32000, media_type="audio/webm"),
    "ogg-opus": PhoneFormat("ogg", "libopus", 48000, bit_rate=32000, media_type="audio/ogg"),
    "webm-vorbis": PhoneFormat("webm", "vorbis", layout="stereo", media_type="audio/webm"),
    "ogg-vorbis": PhoneFormat("ogg", "vorbis", layout="stereo", media_type="audio/ogg"),
    "mp3": PhoneFormat("mp3", "libmp3lame", bit_rate=64000, padding_s=0.1, media_type="audio/mpeg"),
    # iOS Core Audio Format with linear PCM or AAC (FFmpeg's CAF muxer writes no AAC: the
    # AAC packets are put in a CAF file here, ``caf_aac``)
    "caf": PhoneFormat("caf", "pcm_s16le", media_type="audio/x-caf"),
    "caf-aac": PhoneFormat("caf", "aac", bit_rate=64000, media_type="audio/x-caf"),
    "flac": PhoneFormat("flac", "flac", media_type="audio/flac"),
    "wav": PhoneFormat("wav", "pcm_s16le", media_type="audio/wav"),
}


def encode(wav: bytes, kind: str | PhoneFormat) -> bytes:
    """The WAV's audio, encoded and muxed as ``kind`` (a name of ``PHONE_FORMATS``, or a spec)."""
    spec = kind if isinstance(kind, PhoneFormat) else PHONE_FORMATS[kind]
    if (spec.muxer, spec.encoder) == ("caf", "aac"):
        return caf_aac(encode(wav, PhoneFormat("ipod", "aac", bit_rate=spec.bit_rate)))
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    target = spec.sample_rate or rate
    if target != rate:
        mono = soxr.resample(mono, rate, target).astype(np.float32)
    channels = 2 if spec.layout == "stereo" else 1
    planar = np.ascontiguousarray(np.repeat(mono[np.newaxis, :], channels, axis=0))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=spec.muxer) as container:
        # FFmpeg's own Vorbis encoder (stereo only) is marked experimental.
        options = {"strict": "experimental"} if spec.encoder == "vorbis" else {}
        stream = container.add_stream(
            spec.encoder, rate=target, layout=spec.layout, options=options
        )
        assert isinstance(stream, AudioStream)
        context = stream.codec_context
        if spec.bit_rate is not None:
            context.bit_rate = spec.bit_rate
        assert context.format is not None
        resampler = av.AudioResampler(
            format=context.format.name,
            layout=spec.layout,
            rate=target,
            frame_size=context.frame_size or None,
        )
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=spec.layout)
        frame.sample_rate = target
        frame.pts = 0
        frame.time_base = Fraction(1, target)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(piece))
        container.mux(stream.encode(None))
    return buffer.getvalue()


# --- AAC in CAF, chunk by chunk ---------------------------------------------------------------


def caf_aac(m4a: bytes) -> bytes:
    """The AAC packets of an M4A in a Core Audio Format file, as iOS writes one: a ``desc``
    chunk, the decoder configuration as an MPEG-4 ES descriptor (``kuki``), the packet table
    with priming and remainder frames (``pakt``), then the packets (``data``)."""
    with av.open(io.BytesIO(m4a), mode="r") as container:
        stream = container.streams.audio[0]
        config = bytes(stream.codec_context.extradata or b"")
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        valid = int(stream.duration or 0)
        packets = [bytes(packet) for packet in container.demux(stream) if packet.size]
    frames_per_packet = 1024
    priming = len(packets) * frames_per_packet - valid
    desc = struct.pack(
        ">dIIIIII", rate, int.from_bytes(b"aac ", "big"), 2, 0, frames_per_packet, channels, 0
    )
    decoder_info = _descriptor(5, config)
    decoder_config = _descriptor(
        4, bytes([0x40, 0x15]) + bytes(3) + struct.pack(">II", 0, 0) + decoder_info
    )
    kuki = bytes(4) + _descriptor(
        3, struct.pack(">HB", 0, 0) + decoder_config + _descriptor(6, b"\x02")
    )
    pakt = struct.pack(
        ">qqii", len(packets), valid, min(priming, 1024), max(0, priming - 1024)
    ) + b"".join(_ber(len(p)) for p in packets)
    data = bytes(4) + b"".join(packets)  # edit count, then the packets
    chunks = [(b"desc", desc), (b"kuki", kuki), (b"pakt", pakt), (b"data", data)]
    return (
        b"caff"
        + struct.pack(">HH", 1, 0)
        + b"".join(kind + struct.pack(">q", len(body)) + body for kind, body in chunks)
    )


def _descriptor(tag: int, body: bytes) -> bytes:
    size = len(body)
    return (
        bytes(
            [
                tag,
                0x80 | (size >> 21) & 0x7F,
                0x80 | (size >> 14) & 0x7F,
                0x80 | (size >> 7) & 0x7F,
                size & 0x7F,
            ]
        )
        + body
    )


def _ber(value: int) -> bytes:
    """A packet size as CAF writes it: 7 bits a byte, high bit set on all but the last."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


# --- AMR-WB, frame by frame ------------------------------------------------------------------

# Speech bits per AMR-WB mode 0–8 (3GPP TS 26.201); a frame is a header byte and the bits,
# padded to whole bytes, for 20 ms of audio at 16 kHz.
_AMR_WB_BITS = (132, 177, 253, 285, 317, 365, 397, 461, 477)


def amr_wb_frames(seconds: float, *, mode: int = 8, seed: int = 0) -> bytes:
    """An AMR-WB storage-format file of ``seconds`` of frames with random speech bits."""
    rng = np.random.default_rng(seed)
    size = (_AMR_WB_BITS[mode] + 7) // 8
    header = struct.pack("B", (mode << 3) | 0x04)  # frame type, quality bit set
    frames = [header + rng.bytes(size) for _ in range(round(seconds / 0.02))]
    return b"#!AMR-WB\n" + b"".join(frames)


# --- damaged copies --------------------------------------------------------------------------


def truncated(data: bytes, fraction: float) -> bytes:
    return data[: max(1, int(len(data) * fraction))]


def corrupted(data: bytes, *, seed: int, count: int = 16) -> bytes:
    """``count`` random bytes overwritten past the first 64 (the container's header mostly)."""
    rng = np.random.default_rng(seed)
    damaged = bytearray(data)
    for at in rng.integers(min(64, len(data) - 1), len(data), size=count):
        damaged[at] = int(rng.integers(0, 256))
    return bytes(damaged)
