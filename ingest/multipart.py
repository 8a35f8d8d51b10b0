"""A bounded, streaming reader of the upload's multipart body.

The body is parsed as it arrives and held in memory only up to the caps: the audio part up to
``max_upload_bytes``, the metadata part up to a few KiB, a handful of parts and short headers.
Going past a cap raises 413 at once, before the rest of the body is read, and nothing touches
the disk. The audio part's declared type must be one an audio recording has (``AUDIO_MEDIA_TYPES``)
or absent; anything else is refused with 415 as soon as the part's headers are in. Part file
names and every other header value are discarded unread (P3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from core.errors import InvalidInput, InvalidMetadata, PayloadTooLarge, UnsupportedAudio

AUDIO_PART = "audio"
METADATA_PART = "metadata"
MAX_METADATA_BYTES = 16 * 1024
MAX_PARTS = 4
MAX_PART_HEADERS = 4
MAX_HEADER_BYTES = 2048
# What the audio part may be declared as, besides any ``audio/*`` type: bytes of unknown type,
# and the container types that phones and browsers give audio-only recordings (Android labels
# .3gp and .mp4 files video/3gpp and video/mp4; Ogg files are also application/ogg).
AUDIO_MEDIA_TYPES = (
    "audio/*",
    "application/octet-stream",
    "application/ogg",
    "video/mp4",
    "video/webm",
    "video/3gpp",
    "video/3gpp2",
)
# Boundaries, part headers and the metadata part on top of the audio itself.
BODY_OVERHEAD_BYTES = MAX_METADATA_BYTES + MAX_PARTS * (MAX_PART_HEADERS * MAX_HEADER_BYTES + 200)


@dataclass
class _Part:
    name: str | None = None
    media_type: bytes | None = None
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    data: bytearray = field(default_factory=bytearray)
    complete: bool = False


@dataclass(frozen=True)
class UploadParts:
    metadata: bytes
    audio: bytes


def body_limit(max_upload_bytes: int) -> int:
    return max_upload_bytes + BODY_OVERHEAD_BYTES


def check_content_length(value: str | None, *, max_upload_bytes: int) -> None:
    """Refuse a declared body larger than the cap before reading any of it."""
    if value is None:
        return
    try:
        declared = int(value)
    except ValueError:
        raise InvalidInput("the Content-Length header is not a number") from None
    if declared > body_limit(max_upload_bytes):
        raise PayloadTooLarge(f"uploads are limited to {max_upload_bytes} bytes of audio")


def check_audio_media_type(declared: bytes | None) -> None:
    """Refuse an audio part declared as something no recording is (``text/plain``, JSON…)."""
    media_type = (declared or b"").decode("latin-1").strip().lower()
    if not media_type or media_type.startswith("audio/") or media_type in AUDIO_MEDIA_TYPES:
        return
    raise UnsupportedAudio(
        "the audio part must be declared as an audio type (audio/mp4, audio/webm, audio/wav…), "
        "application/octet-stream, or not at all",
        accepted_media_types=list(AUDIO_MEDIA_TYPES),
    )


class MultipartUpload:
    """Feed body chunks in order; read ``metadata`` early and ``parts()`` at the end."""

    def __init__(self, content_type: str | None, *, max_upload_bytes: int) -> None:
        media_type, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if media_type != b"multipart/form-data" or not boundary:
            raise InvalidInput("send the clip as multipart/form-data with audio and metadata parts")
        self.max_upload_bytes = max_upload_bytes
        self._received = 0
        self._parts: list[_Part] = []
        self._by_name: dict[str, _Part] = {}
        self._finished = False
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
            max_header_count=MAX_PART_HEADERS,
            max_header_size=MAX_HEADER_BYTES,
        )

    def feed(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received > body_limit(self.max_upload_bytes):
            raise PayloadTooLarge(f"uploads are limited to {self.max_upload_bytes} bytes of audio")
        try:
            self._parser.write(chunk)
        except MultipartParseError:
            raise InvalidInput("the multipart body is malformed") from None

    @property
    def metadata(self) -> bytes | None:
        """The metadata part once it is complete (often before the audio arrives)."""
        part = self._by_name.get(METADATA_PART)
        return bytes(part.data) if part is not None and part.complete else None

    def parts(self) -> UploadParts:
        if not self._finished:
            raise InvalidInput("the multipart body ended early")
        metadata = self.metadata
        audio = self._by_name.get(AUDIO_PART)
        if metadata is None:
            raise InvalidMetadata("the metadata part is missing")
        if audio is None or not audio.complete:
            raise InvalidInput("the audio part is missing")
        return UploadParts(metadata=metadata, audio=bytes(audio.data))

    # --- parser callbacks ----------------------------------------------------------------

    def _on_part_begin(self) -> None:
        if len(self._parts) >= MAX_PARTS:
            raise InvalidInput(f"at most {MAX_PARTS} parts are accepted")
        self._parts.append(_Part())

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._parts[-1].header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._parts[-1].header_value += data[start:end]

    def _on_header_end(self) -> None:
        part = self._parts[-1]
        header = bytes(part.header_field).strip().lower()
        if header == b"content-type":
            part.media_type, _options = parse_options_header(bytes(part.header_value))
        if header == b"content-disposition":
            _disposition, options = parse_options_header(bytes(part.header_value))
            name = options.get(b"name", b"").decode("latin-1")
            if name in (AUDIO_PART, METADATA_PART):
                if name in self._by_name:
                    raise InvalidInput(f"the {name} part is sent twice")
                part.name = name
                self._by_name[name] = part
        # File names and other headers are dropped here, unread beyond this point.
        part.header_field.clear()
        part.header_value.clear()

    def _on_headers_finished(self) -> None:
        part = self._parts[-1]
        if part.name == AUDIO_PART:
            check_audio_media_type(part.media_type)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._parts[-1]
        if part.name is None:
            return  # parts the pipeline does not read are discarded
        part.data += data[start:end]
        if part.name == AUDIO_PART and len(part.data) > self.max_upload_bytes:
            raise PayloadTooLarge(f"uploads are limited to {self.max_upload_bytes} bytes of audio")
        if part.name == METADATA_PART and len(part.data) > MAX_METADATA_BYTES:
            raise PayloadTooLarge(f"the metadata part is limited to {MAX_METADATA_BYTES} bytes")

    def _on_part_end(self) -> None:
        self._parts[-1].complete = True

    def _on_end(self) -> None:
        self._finished = True
