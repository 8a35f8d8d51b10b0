"""Recordings in other containers and with tags, made from the real FSDD clips."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TIT2, TXXX

FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def transcode(wav: bytes, kind: str, *, sample_rate: int | None = None) -> bytes:
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    target = sample_rate or (48000 if kind == "opus" else rate)
    if target != rate:
        samples = soxr.resample(samples, rate, target)
    container, subtype = FORMATS[kind]
    buffer = io.BytesIO()
    sf.write(buffer, samples, target, format=container, subtype=subtype)
    return buffer.getvalue()


def tone_wav(seconds: float, sample_rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 440 * t), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def wav_with_info(wav: bytes, tags: dict[str, str]) -> bytes:
    """Append a RIFF ``LIST/INFO`` chunk (e.g. INAM name, ICRD date) and fix the RIFF size."""
    body = b"INFO"
    for tag_id, text in tags.items():
        value = text.encode() + b"\x00"
        if len(value) % 2:
            value += b"\x00"
        body += tag_id.encode() + struct.pack("<I", len(value)) + value
    chunk = b"LIST" + struct.pack("<I", len(body)) + body
    data = wav + chunk
    return data[:4] + struct.pack("<I", len(data) - 8) + data[8:]


def wav_claiming_length(wav: bytes, frames: int) -> bytes:
    """A WAV whose header claims ``frames`` frames of audio while holding only a few."""
    data = bytearray(wav)
    at = data.find(b"data")
    struct.pack_into("<I", data, at + 4, frames * 2)
    struct.pack_into("<I", data, 4, min(0xFFFFFFFF, frames * 2 + at))
    return bytes(data)


def flac_claiming_length(wav: bytes, frames: int) -> bytes:
    """A FLAC whose STREAMINFO claims ``frames`` samples while holding well under a second."""
    data = bytearray(transcode(wav, "flac"))
    # STREAMINFO starts after "fLaC" and a 4-byte block header; its bytes 10–17 hold sample
    # rate, channels, bits per sample and, in the low 36 bits, the total sample count.
    (packed,) = struct.unpack_from(">Q", data, 18)
    packed = (packed & ~(2**36 - 1)) | frames
    struct.pack_into(">Q", data, 18, packed)
    return bytes(data)


def flac_with_comments(wav: bytes, comments: dict[str, str], tmp: Path) -> bytes:
    path = tmp / "tagged.flac"
    path.write_bytes(transcode(wav, "flac"))
    audio = FLAC(path)
    for key, value in comments.items():
        audio[key] = value
    audio.save()
    return path.read_bytes()


def mp3_with_id3(wav: bytes, title: str, comment: str, tmp: Path) -> bytes:
    path = tmp / "tagged.mp3"
    path.write_bytes(transcode(wav, "mp3"))
    tags = ID3()
    tags.add(TIT2(encoding=3, text=title))
    tags.add(TXXX(encoding=3, desc="device", text=comment))
    tags.save(path)
    return path.read_bytes()
