"""What phones and browsers record is accepted and stored as the clip its WAV would give.

Each format is encoded by the test from a real FSDD clip (``tests.ingest.phone_formats``), then
sanitized: the canonical FLAC must have the WAV's duration (within what the codec adds and the
container cannot say to drop) and its samples must follow the WAV's closely. Damaged copies of
each container are refused with a documented error or cleaned, never anything else.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.errors import InvalidAudio, UnsupportedAudio
from ingest import containers
from ingest.audio import SanitizedClip, sanitize_audio
from ingest.service import audio_limits
from policies.policy import load_policy
from tests.ingest.phone_formats import (
    PHONE_FORMATS,
    PhoneFormat,
    amr_wb_frames,
    corrupted,
    encode,
    truncated,
)
from tests.ingest.uploads import NOTHING, Mint, Recording, Stored, Upload

LIMITS = audio_limits(load_policy("demo"))
SOURCES = ("7_jackson_32.wav", "0_george_1.wav", "5_theo_7.wav")
# AMR is a speech vocoder at 12.2 kbit/s: it keeps the spectral envelope, not the waveform.
VOCODERS = {"3gp", "amr"}


def _samples(clip: SanitizedClip) -> np.ndarray:
    info = sf.info(io.BytesIO(clip.flac))
    assert (info.format, info.subtype, info.channels, info.samplerate) == (
        "FLAC",
        "PCM_16",
        1,
        LIMITS.output_sample_rate,
    )
    samples, _rate = sf.read(io.BytesIO(clip.flac), dtype="float32")
    return np.asarray(samples)


def _aligned(reference: np.ndarray, other: np.ndarray, max_lag: int) -> tuple[np.ndarray, ...]:
    """Both signals shifted by the lag that best lines them up (codecs delay a little)."""
    size = len(reference) + len(other)
    cross = np.fft.irfft(np.fft.rfft(other, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    lag = int(lags[np.argmax(np.abs(cross[lags]))])
    a, b = (reference, other[lag:]) if lag >= 0 else (reference[-lag:], other)
    length = min(len(a), len(b))
    return a[:length], b[:length]


def _envelope(samples: np.ndarray, frame: int = 320) -> np.ndarray:
    count = len(samples) // frame
    return np.asarray(np.sqrt(np.mean(samples[: count * frame].reshape(count, frame) ** 2, axis=1)))


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", list(PHONE_FORMATS))
def test_each_format_gives_the_clip_its_wav_gives(kind: str, source: str, fsdd_dir: Path) -> None:
    wav = (fsdd_dir / source).read_bytes()
    expected = sanitize_audio(wav, LIMITS)
    clip = sanitize_audio(encode(wav, kind), LIMITS)
    assert clip.sample_rate == expected.sample_rate
    assert clip.duration_s == pytest.approx(expected.duration_s, abs=PHONE_FORMATS[kind].padding_s)
    reference, decoded = _aligned(_samples(expected), _samples(clip), max_lag=4000)
    correlation = float(np.corrcoef(reference, decoded)[0, 1])
    if kind in VOCODERS:
        # Nor the polarity: a waveform and its negative sound the same.
        assert abs(correlation) > 0.6, correlation
        envelope = float(np.corrcoef(_envelope(reference), _envelope(decoded))[0, 1])
        assert envelope > 0.95, envelope
    else:
        assert correlation > 0.95, correlation


@pytest.mark.usefixtures("catalog")
def test_every_format_is_accepted_through_the_upload(
    recording: Recording, upload: Upload, mint: Mint, stored: Callable[[], Stored]
) -> None:
    # A recording of its own in each format: a bucket takes a recording once, however encoded.
    for number, (kind, spec) in enumerate(PHONE_FORMATS.items()):
        response = upload(
            mint(f"learner-{kind}"),
            encode(recording(number), kind),
            filename=f"recording.{kind}",
            media_type=spec.media_type,
        )
        assert response.status_code == 201, (kind, response.text)
        assert stored() == Stored(objects=number + 1, rows=number + 1)


def test_amr_wb_is_read_to_its_length() -> None:
    # No AMR-WB encoder ships with the wheel: well-formed frames of random speech bits.
    samples, rate = containers.decode(
        amr_wb_frames(1.5),
        max_channels=8,
        min_sample_rate=LIMITS.min_sample_rate,
        max_sample_rate=LIMITS.max_sample_rate,
        max_duration_s=LIMITS.max_duration_s,
    )
    assert rate == 16000
    assert samples.shape == (24000, 1)
    assert np.all(np.isfinite(samples))
    assert np.any(samples != 0.0)


def _clean_or_documented(data: bytes) -> str:
    try:
        clip = sanitize_audio(data, LIMITS)
    except (UnsupportedAudio, InvalidAudio) as exc:
        return exc.code
    _samples(clip)
    assert LIMITS.min_duration_s <= clip.duration_s <= LIMITS.max_duration_s + 0.01
    return "accepted"


@pytest.mark.parametrize("kind", [k for k in PHONE_FORMATS if k not in ("wav", "flac")])
def test_truncated_and_corrupted_files_are_refused_or_cleaned(kind: str, fsdd_dir: Path) -> None:
    data = encode((fsdd_dir / "0_george_1.wav").read_bytes(), kind)
    outcomes = {
        _clean_or_documented(damaged)
        for damaged in [
            truncated(data, 0.02),
            truncated(data, 0.5),
            truncated(data, 0.9),
            *(corrupted(data, seed=seed) for seed in range(6)),
        ]
    }
    assert outcomes <= {"accepted", "unsupported_audio", "invalid_audio", "no_speech"}
    assert _clean_or_documented(truncated(data, 0.02)) != "accepted"


def _m4a_claiming(data: bytes, seconds: int) -> bytes:
    """An M4A whose movie, track, media and edit-list headers all claim ``seconds``."""
    patched = bytearray(data)

    def field(box: bytes, offset: int) -> int:  # version-0 boxes: offsets past version+flags
        return patched.find(box) + 4 + offset

    (movie_scale,) = struct.unpack_from(">I", patched, field(b"mvhd", 12))
    (media_scale,) = struct.unpack_from(">I", patched, field(b"mdhd", 12))
    for box, offset, scale in (
        (b"mvhd", 16, movie_scale),
        (b"tkhd", 20, movie_scale),
        (b"mdhd", 16, media_scale),
        (b"elst", 8, movie_scale),
    ):
        if patched.find(box) >= 0:
            struct.pack_into(">I", patched, field(box, offset), seconds * scale)
    # FFmpeg trusts the sample table over the headers: stretch each sample's duration too.
    (entries,) = struct.unpack_from(">I", patched, field(b"stts", 4))
    counts = [
        struct.unpack_from(">I", patched, field(b"stts", 8 + 8 * i))[0] for i in range(entries)
    ]
    delta = seconds * media_scale // sum(counts) + 1
    for i in range(entries):
        struct.pack_into(">I", patched, field(b"stts", 12 + 8 * i), delta)
    return bytes(patched)


def test_a_file_claiming_hours_is_refused_before_decoding(fsdd_dir: Path) -> None:
    data = _m4a_claiming(encode((fsdd_dir / "7_jackson_32.wav").read_bytes(), "m4a"), 3 * 3600)
    with pytest.raises(InvalidAudio, match="longer than"):
        sanitize_audio(data, LIMITS)


def test_a_stream_without_a_length_is_decoded_no_further_than_the_limit() -> None:
    # WebM from a browser's MediaRecorder states no duration: the frame count must stop it.
    seconds = LIMITS.max_duration_s + 2
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * 8000)) / 8000)
    buffer = io.BytesIO()
    sf.write(buffer, tone, 8000, format="WAV", subtype="PCM_16")
    data = encode(buffer.getvalue(), "webm")
    with pytest.raises(InvalidAudio, match="longer than"):
        sanitize_audio(data, LIMITS)


@pytest.mark.parametrize(
    "playlist",
    [
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{path}\n#EXT-X-ENDLIST\n",
        "ffconcat version 1.0\nfile '{path}'\n",
    ],
    ids=["hls", "concat"],
)
def test_an_upload_cannot_make_the_decoder_open_other_files(playlist: str, fsdd_dir: Path) -> None:
    data = playlist.format(path=fsdd_dir / "7_jackson_32.wav").encode()
    with pytest.raises(UnsupportedAudio):
        sanitize_audio(data, LIMITS)


@pytest.mark.usefixtures("catalog")
def test_a_damaged_upload_stores_nothing(
    fsdd_dir: Path, upload: Upload, mint: Mint, stored: Callable[[], Stored]
) -> None:
    data = encode((fsdd_dir / "7_jackson_32.wav").read_bytes(), "m4a")
    response = upload(mint(), truncated(data, 0.3), media_type="audio/mp4")
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "unsupported_audio"
    assert stored() == NOTHING


@pytest.mark.parametrize(
    ("muxer", "encoder", "layout", "tolerance"),
    [
        ("wav", "pcm_u8", "mono", 1 / 64),
        ("caf", "pcm_s16le", "stereo", 1 / 2**14),
        ("caf", "pcm_s32be", "stereo", 1 / 2**14),
        ("caf", "pcm_f32le", "mono", 1e-6),
        ("caf", "pcm_f64be", "stereo", 1e-6),
    ],
)
def test_every_sample_format_reads_as_the_same_samples(
    muxer: str, encoder: str, layout: str, tolerance: float, fsdd_dir: Path
) -> None:
    # Read by FFmpeg's path directly (libsndfile would take the WAV): packed and planar
    # layouts of every sample width reach the sanitizer as the same float samples.
    wav = (fsdd_dir / "7_jackson_32.wav").read_bytes()
    expected, rate = sf.read(io.BytesIO(wav), dtype="float32")
    data = encode(wav, PhoneFormat(muxer, encoder, layout=layout))
    samples, decoded_rate = containers.decode(
        data,
        max_channels=8,
        min_sample_rate=LIMITS.min_sample_rate,
        max_sample_rate=LIMITS.max_sample_rate,
        max_duration_s=LIMITS.max_duration_s,
    )
    assert decoded_rate == rate
    assert samples.shape == (len(expected), 2 if layout == "stereo" else 1)
    for channel in range(samples.shape[1]):
        assert np.max(np.abs(samples[:, channel] - expected)) < tolerance
