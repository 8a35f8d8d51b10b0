"""Inspection of released FLAC objects (P7): the service's own encoding and nothing else.

The metadata block headers are parsed here rather than through a tagging library, so the check
depends on the FLAC format itself: ``fLaC``, then blocks of (last flag + 7-bit type, 24-bit
length). The encoder writes STREAMINFO, a VORBIS_COMMENT holding only its vendor string, and
possibly SEEKTABLE and PADDING; anything else came from somewhere it should not have.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import soundfile as sf

BLOCK_NAMES = {
    0: "STREAMINFO",
    1: "PADDING",
    2: "APPLICATION",
    3: "SEEKTABLE",
    4: "VORBIS_COMMENT",
    5: "CUESHEET",
    6: "PICTURE",
}
ALLOWED_BLOCKS = frozenset({"STREAMINFO", "PADDING", "SEEKTABLE", "VORBIS_COMMENT"})
_MAGIC = b"fLaC"


@dataclass(frozen=True)
class FlacMetadata:
    blocks: tuple[str, ...]
    vorbis_comments: int
    leading_tag: bool
    trailing_tag: bool


class FlacFormatError(ValueError):
    """The bytes are not a well-formed FLAC stream."""


def read_metadata(data: bytes) -> FlacMetadata:
    """The metadata block types of a FLAC stream and the number of Vorbis comments in it."""
    start = _id3v2_length(data)
    if data[start : start + len(_MAGIC)] != _MAGIC:
        raise FlacFormatError("does not start with the FLAC signature")
    blocks: list[str] = []
    comments = 0
    offset = start + len(_MAGIC)
    while True:
        if offset + 4 > len(data):
            raise FlacFormatError("metadata block header runs past the end")
        header = data[offset]
        block_type = header & 0x7F
        length = int.from_bytes(data[offset + 1 : offset + 4], "big")
        body_start = offset + 4
        body_end = body_start + length
        if body_end > len(data):
            raise FlacFormatError("metadata block runs past the end")
        name = BLOCK_NAMES.get(block_type, f"type {block_type}")
        blocks.append(name)
        if name == "VORBIS_COMMENT":
            comments += _vorbis_comment_count(data[body_start:body_end])
        offset = body_end
        if header & 0x80:
            break
    if not blocks or blocks[0] != "STREAMINFO":
        raise FlacFormatError("the first metadata block is not STREAMINFO")
    trailing_tag = data[-128:-125] == b"TAG" or data[-32:-24] == b"APETAGEX"
    return FlacMetadata(tuple(blocks), comments, start > 0, trailing_tag)


def _id3v2_length(data: bytes) -> int:
    """Bytes taken by an ID3v2 tag prepended to the stream (0 when there is none)."""
    if len(data) < 10 or not data.startswith(b"ID3"):
        return 0
    size = 0
    for byte in data[6:10]:
        size = (size << 7) | (byte & 0x7F)
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def _vorbis_comment_count(body: bytes) -> int:
    if len(body) < 8:
        raise FlacFormatError("VORBIS_COMMENT block is truncated")
    vendor_length = int.from_bytes(body[:4], "little")
    count_at = 4 + vendor_length
    if count_at + 4 > len(body):
        raise FlacFormatError("VORBIS_COMMENT block is truncated")
    return int.from_bytes(body[count_at : count_at + 4], "little")


def metadata_problems(meta: FlacMetadata) -> list[str]:
    """What, if anything, in the metadata goes beyond the encoder's own blocks."""
    problems = [f"{name} block" for name in meta.blocks if name not in ALLOWED_BLOCKS]
    if meta.blocks.count("STREAMINFO") != 1:
        problems.append("more than one STREAMINFO block")
    if meta.vorbis_comments:
        problems.append(f"{meta.vorbis_comments} Vorbis comment(s) beyond the vendor string")
    if meta.leading_tag:
        problems.append("an ID3 tag before the stream")
    if meta.trailing_tag:
        problems.append("a tag appended after the audio")
    return problems


def format_problems(data: bytes, *, sample_rate: int) -> list[str]:
    """Whether the bytes decode as mono 16-bit FLAC at ``sample_rate``, fully."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            problems = []
            if handle.format != "FLAC":
                problems.append(f"container {handle.format}, not FLAC")
            if handle.channels != 1:
                problems.append(f"{handle.channels} channels, not mono")
            if handle.subtype != "PCM_16":
                problems.append(f"sample format {handle.subtype}, not PCM_16")
            if handle.samplerate != sample_rate:
                problems.append(f"{handle.samplerate} Hz, not {sample_rate} Hz")
            handle.read(dtype="int16")
    except (RuntimeError, sf.LibsndfileError, TypeError, ValueError):
        return ["does not decode as audio"]
    return problems
