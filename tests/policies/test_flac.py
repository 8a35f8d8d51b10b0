"""The FLAC metadata parser behind the P7 check, on real clips and hand-tagged copies."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC, Picture
from mutagen.id3 import ID3, TIT2

from ingest.audio import AudioLimits, sanitize_audio
from policies import flac

LIMITS = AudioLimits(
    min_duration_s=0.3,
    max_duration_s=30.0,
    min_sample_rate=8000,
    max_sample_rate=48000,
    output_sample_rate=16000,
    min_speech_s=0.06,
)


@pytest.fixture
def clean(fsdd_dir: Path) -> bytes:
    return sanitize_audio((fsdd_dir / "7_jackson_32.wav").read_bytes(), LIMITS).flac


def _edit(data: bytes, tmp_path: Path, edit: str) -> bytes:
    path = tmp_path / "clip.flac"
    path.write_bytes(data)
    tagged = FLAC(path)
    if edit == "comment":
        tagged["TITLE"] = "my recording"
    elif edit == "picture":
        picture = Picture()
        picture.mime = "image/jpeg"
        picture.data = b"\xff\xd8\xff" + b"\x00" * 32
        tagged.add_picture(picture)
    elif edit == "padding_only":
        pass
    tagged.save(padding=lambda info: 1024)
    return path.read_bytes()


def test_the_services_own_encoding_is_clean(clean: bytes) -> None:
    meta = flac.read_metadata(clean)
    assert meta.blocks[0] == "STREAMINFO"
    assert set(meta.blocks) <= flac.ALLOWED_BLOCKS
    assert meta.vorbis_comments == 0
    assert flac.metadata_problems(meta) == []
    assert flac.format_problems(clean, sample_rate=16000) == []


def test_padding_and_vendor_string_are_allowed(clean: bytes, tmp_path: Path) -> None:
    padded = _edit(clean, tmp_path, "padding_only")
    meta = flac.read_metadata(padded)
    assert "PADDING" in meta.blocks
    assert flac.metadata_problems(meta) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [("comment", "1 Vorbis comment(s)"), ("picture", "PICTURE block")],
)
def test_tags_and_pictures_are_flagged(
    clean: bytes, tmp_path: Path, edit: str, expected: str
) -> None:
    problems = flac.metadata_problems(flac.read_metadata(_edit(clean, tmp_path, edit)))
    assert any(expected in problem for problem in problems), problems


def test_application_and_cuesheet_blocks_are_flagged(clean: bytes) -> None:
    # Splice an APPLICATION block (type 2) and a CUESHEET block (type 5) after STREAMINFO.
    streaminfo_end = 4 + 4 + 34
    first = clean[4] & 0x7F
    assert first == 0
    head = bytes([clean[4] & 0x7F]) + clean[5:8]
    application = bytes([2]) + (8).to_bytes(3, "big") + b"abcdXXXX"
    cuesheet = bytes([5]) + (4).to_bytes(3, "big") + b"\x00" * 4
    spliced = b"fLaC" + head + clean[8:streaminfo_end] + application + cuesheet
    spliced += clean[streaminfo_end:]
    problems = flac.metadata_problems(flac.read_metadata(spliced))
    assert "APPLICATION block" in problems
    assert "CUESHEET block" in problems


def test_id3_tags_around_the_stream_are_flagged(clean: bytes, tmp_path: Path) -> None:
    path = tmp_path / "id3.flac"
    path.write_bytes(clean)
    tag = ID3()
    tag.add(TIT2(encoding=3, text="title"))
    tag.save(path)
    problems = flac.metadata_problems(flac.read_metadata(path.read_bytes()))
    assert "an ID3 tag before the stream" in problems
    trailing = clean + b"TAG" + b"\x00" * 125
    assert "a tag appended after the audio" in flac.metadata_problems(flac.read_metadata(trailing))


def test_other_formats_and_garbage(clean: bytes) -> None:
    stereo = io.BytesIO()
    sf.write(stereo, np.zeros((1600, 2), dtype="int16"), 44100, format="FLAC", subtype="PCM_24")
    problems = flac.format_problems(stereo.getvalue(), sample_rate=16000)
    assert problems == [
        "2 channels, not mono",
        "sample format PCM_24, not PCM_16",
        "44100 Hz, not 16000 Hz",
    ]
    with pytest.raises(flac.FlacFormatError):
        flac.read_metadata(b"RIFF....WAVEfmt ")
    with pytest.raises(flac.FlacFormatError):
        flac.read_metadata(clean[:20])
    assert flac.format_problems(b"fLaC" + b"\x00" * 40, sample_rate=16000) == [
        "does not decode as audio"
    ]


def test_the_sanitizers_output_is_the_canonical_encoding_of_its_samples(clean: bytes) -> None:
    decoded = flac.decode(clean, sample_rate=16000)
    assert decoded.problems == []
    again = flac.encode_canonical(decoded.pcm, decoded.sample_rate)
    assert again == clean
    assert flac.encode_canonical(decoded.pcm, decoded.sample_rate) == again
    assert flac.read_metadata(clean).blocks == ("STREAMINFO", "VORBIS_COMMENT")
    assert flac.canonical_differences(clean, again) == []


def test_canonical_differences_name_padding_and_appended_bytes(
    clean: bytes, tmp_path: Path
) -> None:
    padded = _edit(clean, tmp_path, "padding_only")
    problems = flac.canonical_differences(padded, clean)
    assert (
        "metadata blocks STREAMINFO, VORBIS_COMMENT, PADDING, not STREAMINFO, VORBIS_COMMENT"
        in problems
    )
    assert flac.canonical_differences(clean + b"hidden", clean) == [
        "6 byte(s) after the last audio frame"
    ]


def test_canonical_encoding_takes_only_mono_16_bit_samples() -> None:
    with pytest.raises(ValueError, match="mono int16"):
        flac.encode_canonical(np.zeros(1600, dtype=np.float32), 16000)
