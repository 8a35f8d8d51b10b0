"""The audio part's declared type must be one a recording has; anything else is 415 at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.errors import UnsupportedAudio
from ingest.multipart import AUDIO_MEDIA_TYPES, MultipartUpload
from tests.ingest.uploads import NOTHING, Mint, Stored, Upload


@pytest.mark.usefixtures("catalog")
@pytest.mark.parametrize(
    "media_type", ["text/plain", "application/json", "image/png", "text/html; charset=utf-8"]
)
def test_audio_declared_as_another_type_is_415_naming_what_is_accepted(
    media_type: str,
    wav_bytes: bytes,
    upload: Upload,
    mint: Mint,
    stored: Callable[[], Stored],
) -> None:
    response = upload(mint(), wav_bytes, media_type=media_type)
    assert response.status_code == 415, response.text
    problem = response.json()
    assert problem["code"] == "unsupported_audio"
    assert "audio" in problem["detail"]
    assert "application/octet-stream" in problem["accepted_media_types"]
    assert "audio/*" in problem["accepted_media_types"]
    assert stored() == NOTHING


@pytest.mark.usefixtures("catalog")
@pytest.mark.parametrize(
    "media_type",
    [
        "audio/wav",
        "audio/x-wav",
        "AUDIO/WAV",
        "audio/webm;codecs=opus",
        "video/mp4",
        "application/octet-stream",
    ],
)
def test_audio_and_container_types_are_accepted(
    media_type: str, wav_bytes: bytes, upload: Upload, mint: Mint
) -> None:
    assert upload(mint(), wav_bytes, media_type=media_type).status_code == 201


def test_an_audio_part_without_a_declared_type_is_read() -> None:
    upload = MultipartUpload("multipart/form-data; boundary=xyz", max_upload_bytes=1000)
    upload.feed(
        b'--xyz\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{}\r\n'
        b'--xyz\r\nContent-Disposition: form-data; name="audio"\r\n\r\nRIFF\r\n--xyz--\r\n'
    )
    assert upload.parts().audio == b"RIFF"


def test_the_refusal_comes_before_the_audio_is_read() -> None:
    upload = MultipartUpload("multipart/form-data; boundary=xyz", max_upload_bytes=1000)
    with pytest.raises(UnsupportedAudio) as refused:
        # The type comes before the name: the check waits for the part's headers to end.
        upload.feed(
            b"--xyz\r\nContent-Type: text/plain\r\n"
            b'Content-Disposition: form-data; name="audio"\r\n\r\n'
        )
    assert refused.value.extra["accepted_media_types"] == list(AUDIO_MEDIA_TYPES)
