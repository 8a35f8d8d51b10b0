"""Hypothesis strategies that mutate real recordings: bit flips, truncation, header fields,
huge claimed sizes, spliced and repeated chunks."""

from __future__ import annotations

import io
import struct
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import strategies as st

from tests.datasets import fixture_clip
from tests.ingest.phone_formats import encode

SOURCE_CLIPS = ("7_jackson_32.wav", "8_lucas_0.wav", "0_george_1.wav")
FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
PHONE_KINDS = ("m4a", "aac", "3gp", "webm", "caf-aac")
# Values that make header fields lie: zero, one, signed/unsigned extremes, powers of two.
HOSTILE_U32 = (0, 1, 2, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
HEADER_BYTES = 96


@cache
def base_files() -> dict[str, bytes]:
    """The FSDD clips in every container the sanitizer must handle."""
    files: dict[str, bytes] = {}
    for name in SOURCE_CLIPS:
        samples, rate = sf.read(fixture_clip(name), dtype="float32")
        for kind, (container, subtype) in FORMATS.items():
            buffer = io.BytesIO()
            sf.write(buffer, samples, rate, format=container, subtype=subtype)
            files[f"{Path(name).stem}.{kind}"] = buffer.getvalue()
        files[f"{Path(name).stem}.stereo48k.wav"] = _stereo_48k(samples, rate)
        # What phones and browsers record, read by FFmpeg's path (ingest.containers).
        wav = fixture_clip(name).read_bytes()
        for kind in PHONE_KINDS:
            files[f"{Path(name).stem}.{kind}"] = encode(wav, kind)
    return files


def _stereo_48k(samples: np.ndarray, rate: int) -> bytes:
    import soxr

    up = soxr.resample(samples, rate, 48000)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([up, 0.5 * up], axis=1), 48000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


@st.composite
def _mutation(draw: st.DrawFn, data: bytearray) -> None:
    size = len(data)
    op = draw(
        st.sampled_from(
            ("flip", "byte", "header_u32", "header_u16", "truncate", "insert", "delete", "repeat")
        )
    )
    if op == "flip":
        at = draw(st.integers(0, size - 1))
        data[at] ^= 1 << draw(st.integers(0, 7))
    elif op == "byte":
        data[draw(st.integers(0, size - 1))] = draw(st.integers(0, 255))
    elif op in ("header_u32", "header_u16") and size >= 4:
        width = 4 if op == "header_u32" else 2
        at = draw(st.integers(0, min(HEADER_BYTES, size) - width))
        value = draw(st.sampled_from(HOSTILE_U32) | st.integers(0, 2**32 - 1))
        endian = draw(st.sampled_from("<>"))
        fmt = endian + ("I" if width == 4 else "H")
        struct.pack_into(fmt, data, at, value & (0xFFFFFFFF if width == 4 else 0xFFFF))
    elif op == "truncate" or op.startswith("header"):
        del data[draw(st.integers(0, size - 1)) :]
    elif op == "insert":
        at = draw(st.integers(0, size))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    elif op == "delete":
        at = draw(st.integers(0, size - 1))
        del data[at : at + draw(st.integers(1, 256))]
    else:  # repeat a slice: duplicated chunks and frames
        at = draw(st.integers(0, size - 1))
        piece = bytes(data[at : at + draw(st.integers(1, 512))])
        data[at:at] = piece * draw(st.integers(1, 8))
    if not data:
        data.append(0)


@st.composite
def mutated_audio(draw: st.DrawFn) -> tuple[str, bytes]:
    """(name of the real file it came from, its mutated bytes)."""
    files = base_files()
    name = draw(st.sampled_from(sorted(files)))
    data = bytearray(files[name])
    for _ in range(draw(st.integers(1, 6))):
        draw(_mutation(data))
    return name, bytes(data)
