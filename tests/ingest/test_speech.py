"""Speech required (P6): silence, tones and noise are refused with 422 ``no_speech``.

Every FSDD recording and the synthesized voice pass the check; nothing of a refused upload is
stored.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from chorus.synthetic_voice import voiced_samples, voiced_wav
from core.errors import NoSpeech
from ingest import speech
from ingest.audio import sanitize_audio
from ingest.service import audio_limits
from ingest.speech import has_speech, require_speech, speech_evidence
from policies.policy import load_policy
from tests.ingest.uploads import NOTHING, Mint, Stored, Upload

LIMITS = audio_limits(load_policy("demo"))
RATE = 16000
SECONDS = 2.0


def _wav(samples: np.ndarray, rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _sine(*frequencies: float) -> np.ndarray:
    t = np.arange(int(SECONDS * RATE)) / RATE
    tones = [np.sin(2 * np.pi * frequency * t) for frequency in frequencies]
    mixed: np.ndarray = np.sum(tones, axis=0)
    return 0.3 / len(frequencies) * mixed


def _noise(exponent: float, level: float = 0.3) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent: 0 white, 1 pink, 2 brown."""
    rng = np.random.default_rng(int(exponent * 10))
    size = int(SECONDS * RATE)
    frequencies = np.fft.rfftfreq(size, 1 / RATE)
    frequencies[0] = frequencies[1]
    shaped = np.fft.irfft(np.fft.rfft(rng.standard_normal(size)) / frequencies ** (exponent / 2))
    return level * shaped / float(np.max(np.abs(shaped)))


def _dtmf_digits() -> np.ndarray:
    """Keypad tones of 0.1 s with 0.05 s pauses, as a phone dials."""
    t = np.arange(int(0.1 * RATE)) / RATE
    pairs = [(697, 1209), (770, 1336), (852, 1477), (941, 1633)] * 3
    return np.concatenate(
        [
            np.r_[
                0.15 * np.sin(2 * np.pi * low * t) + 0.15 * np.sin(2 * np.pi * high * t),
                np.zeros(int(0.05 * RATE)),
            ]
            for low, high in pairs
        ]
    )


NOT_SPEECH: dict[str, np.ndarray] = {
    "digital silence": np.zeros(int(SECONDS * RATE)),
    "low-level noise": _noise(0.0, level=0.001),
    "white noise": _noise(0.0),
    "pink noise": _noise(1.0),
    "brown noise": _noise(2.0),
    "440 Hz sine": _sine(440),
    "1 kHz sine": _sine(1000),
    "120 Hz hum": _sine(120),
    "two-tone chord": _sine(440, 554),
    "steady DTMF tone": _sine(697, 1209),
    "dialled DTMF digits": _dtmf_digits(),
    "120 Hz buzz (square wave)": 0.3 * np.sign(_sine(120)),
    "tremolo sine": _sine(440) * (0.6 + 0.4 * _sine(4) / 0.3),
}


@pytest.mark.full_data
def test_every_fsdd_recording_holds_speech(full_data: Path) -> None:
    _assert_all_hold_speech(sorted((full_data / "fsdd" / "recordings").glob("*.wav")), 3000)


def test_every_recording_of_the_test_fixtures_holds_speech(fsdd_dir: Path) -> None:
    # The miniature FSDD the default suite uploads: shipped clips and their variants.
    _assert_all_hold_speech(sorted(fsdd_dir.glob("*.wav")), 600)


def _assert_all_hold_speech(files: list[Path], at_least: int) -> None:
    # As the sanitizer sees them: resampled to the policy's output rate.
    assert len(files) >= at_least
    refused = []
    for path in files:
        samples, rate = sf.read(path, dtype="float32")
        mono = soxr.resample(samples, rate, LIMITS.output_sample_rate, quality="HQ")
        try:
            require_speech(mono, LIMITS.output_sample_rate, min_speech_s=LIMITS.min_speech_s)
        except NoSpeech:
            refused.append(path.name)
    assert refused == []


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
@pytest.mark.parametrize("pitch", [90.0, 140.0, 220.0])
def test_the_synthesized_voice_holds_speech(rate: int, pitch: float) -> None:
    for seed in range(5):
        clip = sanitize_audio(
            voiced_wav(seed=seed, seconds=1.5, sample_rate=rate, pitch_hz=pitch), LIMITS
        )
        assert clip.duration_s == pytest.approx(1.5, abs=0.01)


@pytest.mark.parametrize("name", list(NOT_SPEECH))
def test_sounds_without_a_voice_are_refused_by_the_sanitizer(name: str) -> None:
    with pytest.raises(NoSpeech):
        sanitize_audio(_wav(NOT_SPEECH[name]), LIMITS)


@pytest.mark.parametrize("name", list(NOT_SPEECH))
def test_long_sounds_without_a_voice_are_refused_too(name: str) -> None:
    # Several seconds: the check judges them second by second and never stops early.
    assert not has_speech(np.tile(NOT_SPEECH[name], 3), RATE, min_speech_s=LIMITS.min_speech_s)


def test_a_long_voice_is_judged_on_its_first_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    heard = []

    def counting(vad: object, frames: np.ndarray) -> np.ndarray:
        heard.append(len(frames))
        return real(vad, frames)

    real = speech._webrtc_speech
    monkeypatch.setattr(speech, "_webrtc_speech", counting)
    voice = voiced_samples(seed=1, seconds=12.0, sample_rate=RATE)

    assert has_speech(voice, RATE, min_speech_s=LIMITS.min_speech_s)
    assert len(heard) == 1  # one second of frames was enough
    assert speech_evidence(voice, RATE).complete
    frames = int(12.0 * speech.ANALYSIS_RATE) // speech.FRAME
    assert len(heard) == 1 + math.ceil(frames / speech.CHUNK_FRAMES)  # the whole clip, in seconds


def test_a_voice_among_silence_is_still_speech() -> None:
    voice = voiced_samples(seed=3, seconds=0.6, sample_rate=RATE)
    padded = np.concatenate([np.zeros(2 * RATE), voice, np.zeros(2 * RATE)])
    assert sanitize_audio(_wav(padded), LIMITS).duration_s == pytest.approx(4.6, abs=0.01)


@pytest.mark.usefixtures("catalog")
def test_silence_tones_and_noise_are_refused_through_the_api_and_nothing_is_stored(
    upload: Upload, mint: Mint, stored: Callable[[], Stored]
) -> None:
    for name, samples in NOT_SPEECH.items():
        response = upload(mint(), _wav(samples))
        assert response.status_code == 422, (name, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "no_speech", name
    assert stored() == NOTHING


@pytest.mark.usefixtures("catalog")
def test_silent_padding_does_not_count_towards_k(
    upload: Upload, mint: Mint, stored: Callable[[], Stored]
) -> None:
    # The attack that prompted the check: k−1 accounts upload 2 s of zeros to fill a bucket.
    silence = _wav(np.zeros(2 * 8000), rate=8000)
    for account in range(4):
        assert upload(mint(f"padding-{account}"), silence).json()["code"] == "no_speech"
    assert stored() == NOTHING
    assert upload(mint("speaker"), voiced_wav(seed=1, seconds=1.0)).status_code == 201
    assert stored() == Stored(objects=1, rows=1)


def test_the_voice_detector_is_the_maintained_wheel_build() -> None:
    """The old ``webrtcvad`` package (a dependency of the benchmark's speaker encoder) installs
    a module of the same name that imports ``pkg_resources``; it must not replace ours."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import webrtcvad; webrtcvad.Vad(2)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
