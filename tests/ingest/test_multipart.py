"""The bounded multipart reader refuses oversized or odd bodies before reading them whole."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput, InvalidMetadata, PayloadTooLarge
from ingest.multipart import MAX_PARTS, MultipartUpload, body_limit, check_content_length

CONTENT_TYPE = "multipart/form-data; boundary=xyz"
LIMIT = 100_000


def _part(name: str, data: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--xyz\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"


def _body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--xyz--\r\n"


def _bytes_fed_until_refused(upload: MultipartUpload, *, chunk: int) -> int:
    fed = 0
    while fed < 100 * LIMIT:
        fed += chunk
        try:
            upload.feed(b"\0" * chunk)
        except PayloadTooLarge:
            return fed
    raise AssertionError("never refused")


def test_reads_metadata_before_the_audio_arrives() -> None:
    upload = MultipartUpload(CONTENT_TYPE, max_upload_bytes=LIMIT)
    upload.feed(_part("metadata", b'{"exercise_id": "e"}') + b"--xyz\r\n")
    assert upload.metadata == b'{"exercise_id": "e"}'
    upload.feed(b'Content-Disposition: form-data; name="audio"; filename="me.wav"\r\n\r\nRIFF')
    upload.feed(b"\r\n--xyz--\r\n")
    parts = upload.parts()
    assert (parts.metadata, parts.audio) == (b'{"exercise_id": "e"}', b"RIFF")


def test_unknown_parts_are_discarded() -> None:
    upload = MultipartUpload(CONTENT_TYPE, max_upload_bytes=LIMIT)
    upload.feed(_body(_part("device", b"secret"), _part("metadata", b"{}"), _part("audio", b"a")))
    assert upload.parts().audio == b"a"


def test_audio_over_the_cap_stops_reading_at_once() -> None:
    upload = MultipartUpload(CONTENT_TYPE, max_upload_bytes=LIMIT)
    upload.feed(_part("metadata", b"{}"))
    upload.feed(b'--xyz\r\nContent-Disposition: form-data; name="audio"\r\n\r\n')
    assert _bytes_fed_until_refused(upload, chunk=4096) == LIMIT + 4096 - LIMIT % 4096


def test_whole_body_is_capped_even_in_ignored_parts() -> None:
    upload = MultipartUpload(CONTENT_TYPE, max_upload_bytes=LIMIT)
    upload.feed(b'--xyz\r\nContent-Disposition: form-data; name="junk"\r\n\r\n')
    assert _bytes_fed_until_refused(upload, chunk=4096) <= body_limit(LIMIT) + 4096


def test_metadata_part_is_capped() -> None:
    upload = MultipartUpload(CONTENT_TYPE, max_upload_bytes=LIMIT)
    with pytest.raises(PayloadTooLarge):
        upload.feed(_part("metadata", b"{" + b" " * 20_000 + b"}"))


def test_too_many_parts_or_duplicates_are_refused() -> None:
    upload = MultipartUpload(CONTENT_TYPE, max_upload_bytes=LIMIT)
    with pytest.raises(InvalidInput, match="parts"):
        upload.feed(_body(*[_part(f"p{i}", b"x") for i in range(MAX_PARTS + 1)]))
    upload = MultipartUpload(CONTENT_TYPE, max_upload_bytes=LIMIT)
    with pytest.raises(InvalidInput, match="twice"):
        upload.feed(_body(_part("audio", b"a"), _part("audio", b"b")))


def test_long_part_headers_are_refused() -> None:
    upload = MultipartUpload(CONTENT_TYPE, max_upload_bytes=LIMIT)
    with pytest.raises(InvalidInput):
        upload.feed(_body(_part("audio", b"a", filename="n" * 5000)))


def test_missing_parts_and_truncated_bodies() -> None:
    upload = MultipartUpload(CONTENT_TYPE, max_upload_bytes=LIMIT)
    upload.feed(_body(_part("audio", b"a")))
    with pytest.raises(InvalidMetadata):
        upload.parts()
    upload = MultipartUpload(CONTENT_TYPE, max_upload_bytes=LIMIT)
    upload.feed(_part("metadata", b"{}") + _part("audio", b"a"))
    with pytest.raises(InvalidInput, match="ended early"):
        upload.parts()


@pytest.mark.parametrize("content_type", [None, "application/json", "multipart/form-data"])
def test_needs_multipart_with_a_boundary(content_type: str | None) -> None:
    with pytest.raises(InvalidInput):
        MultipartUpload(content_type, max_upload_bytes=LIMIT)


def test_content_length_check() -> None:
    check_content_length(None, max_upload_bytes=LIMIT)
    check_content_length(str(body_limit(LIMIT)), max_upload_bytes=LIMIT)
    with pytest.raises(PayloadTooLarge):
        check_content_length(str(body_limit(LIMIT) + 1), max_upload_bytes=LIMIT)
    with pytest.raises(InvalidInput):
        check_content_length("lots", max_upload_bytes=LIMIT)
