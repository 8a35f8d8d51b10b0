"""The service's canonical FLAC encoding and the inspection of released objects (P7).

A released clip must be byte for byte what ``encode_canonical`` makes of its own decoded
samples. The encoding is deterministic: the same samples give the same bytes (STREAMINFO with
the samples' MD5, a VORBIS_COMMENT holding only libFLAC's vendor string, then the audio frames;
no PADDING, nothing after the last frame), so any byte an upload or an intruder could use to
carry data (a longer or altered vendor string, padding, bytes appended to the stream) makes the
clip differ from its canonical encoding. The sanitizer (``ingest.audio``) encodes through the
same function.

The metadata block headers are parsed here rather than through a tagging library, so the check
depends on the FLAC format itself: ``fLaC``, then blocks of (last flag + 7-bit type, 24-bit
length). ``metadata_problems`` names foreign metadata (tags, pictures, cue sheets, application
blocks); ``canonical_differences`` names every other byte that is not the encoder's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
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
# The fastest FLAC level: a few percent larger files for a third less encoding time. Part of
# the canonical form: every released clip is checked against an encoding at this level.
COMPRESSION_LEVEL = 0.0


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


def duration_s(data: bytes) -> float:
    """Seconds of audio in a FLAC stream, from its header (nothing is decoded)."""
    info = sf.info(io.BytesIO(data))
    return float(info.frames / info.samplerate)


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


@dataclass(frozen=True)
class DecodedClip:
    """A clip's 16-bit samples and what about its format is not the service's."""

    pcm: np.ndarray
    sample_rate: int
    problems: list[str]


def decode(data: bytes, *, sample_rate: int) -> DecodedClip:
    """Decode ``data`` fully as 16-bit samples, noting where it is not mono PCM_16 FLAC."""
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
            pcm = handle.read(dtype="int16")
            rate = int(handle.samplerate)
    except (RuntimeError, sf.LibsndfileError, TypeError, ValueError):
        return DecodedClip(np.zeros(0, dtype=np.int16), 0, ["does not decode as audio"])
    return DecodedClip(pcm, rate, problems)


def format_problems(data: bytes, *, sample_rate: int) -> list[str]:
    """Whether the bytes decode as mono 16-bit FLAC at ``sample_rate``, fully."""
    return decode(data, sample_rate=sample_rate).problems


def encode_canonical(pcm: np.ndarray, sample_rate: int) -> bytes:
    """The service's one FLAC encoding of mono 16-bit ``pcm``: same samples, same bytes."""
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"expected mono int16 samples, got {pcm.dtype} of shape {pcm.shape}")
    buffer = io.BytesIO()
    sf.write(
        buffer,
        pcm,
        sample_rate,
        format="FLAC",
        subtype="PCM_16",
        compression_level=COMPRESSION_LEVEL,
    )
    return buffer.getvalue()


def encode_samples(samples: np.ndarray, sample_rate: int) -> bytes:
    """The canonical FLAC of float samples in [-1, 1] (clipped first), as the sanitizer makes it."""
    # 16-bit samples made here (as libsndfile would: scale by 32767, round) cost a third of
    # libsndfile's own float conversion.
    clipped = np.clip(samples, -1.0, 1.0)
    return encode_canonical(np.rint(clipped * 32767.0).astype(np.int16), sample_rate)


def canonical_differences(data: bytes, canonical: bytes) -> list[str]:
    """How ``data`` differs from ``canonical``, in words that quote none of its bytes."""
    if data == canonical:
        return []
    try:
        ours, our_audio = _blocks(data)
    except FlacFormatError as exc:
        return [str(exc)]
    theirs, their_audio = _blocks(canonical)
    differences = []
    if [kind for kind, _ in ours] != [kind for kind, _ in theirs]:
        names = ", ".join(BLOCK_NAMES.get(kind, f"type {kind}") for kind, _ in ours)
        expected = ", ".join(BLOCK_NAMES.get(kind, f"type {kind}") for kind, _ in theirs)
        differences.append(f"metadata blocks {names}, not {expected}")
    for kind, body in ours:
        if kind == 1 and any(body):
            differences.append(
                f"a PADDING block holding {sum(1 for b in body if b)} non-zero byte(s)"
            )
    our_info = [body for kind, body in ours if kind == 0]
    their_info = [body for kind, body in theirs if kind == 0]
    if our_info[:1] != their_info[:1]:
        differences.append("STREAMINFO differs from the encoder's")
    our_vendor = [_vendor(body) for kind, body in ours if kind == 4]
    their_vendor = [_vendor(body) for kind, body in theirs if kind == 4]
    if our_vendor[:1] != their_vendor[:1] and our_vendor:
        differences.append(
            f"vendor string of {len(our_vendor[0])} byte(s) is not the encoder's "
            f"({len(their_vendor[0]) if their_vendor else 0} byte(s))"
        )
    if our_audio.startswith(their_audio) and len(our_audio) > len(their_audio):
        differences.append(
            f"{len(our_audio) - len(their_audio)} byte(s) after the last audio frame"
        )
    elif our_audio != their_audio:
        differences.append("audio frames differ from the encoder's")
    return differences or ["bytes differ from the encoder's"]


def _blocks(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The metadata blocks (type, body) of a FLAC stream and the bytes after them."""
    if not data.startswith(_MAGIC):
        raise FlacFormatError("does not start with the FLAC signature")
    blocks = []
    offset = len(_MAGIC)
    while True:
        if offset + 4 > len(data):
            raise FlacFormatError("metadata block header runs past the end")
        header = data[offset]
        length = int.from_bytes(data[offset + 1 : offset + 4], "big")
        body_end = offset + 4 + length
        if body_end > len(data):
            raise FlacFormatError("metadata block runs past the end")
        blocks.append((header & 0x7F, data[offset + 4 : body_end]))
        offset = body_end
        if header & 0x80:
            return blocks, data[offset:]


def _vendor(body: bytes) -> bytes:
    length = int.from_bytes(body[:4], "little")
    return body[4 : 4 + length]
