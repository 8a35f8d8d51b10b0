"""The release's voice transform: the envelope moves, length, rate and canonical FLAC stay."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import soundfile as sf

from core.errors import ConfigurationError, UnsupportedAudio
from policies import flac
from policies.policy import Policy, load_policy
from policies.voice import (
    VoiceAnonymizer,
    decode_mono,
    levinson,
    mcadams_transform,
    stretch_frequency,
    warp_poles,
)

RATE = 16000
HAS_PYWORLD = importlib.util.find_spec("pyworld") is not None


def vowel(seconds: float = 0.8, *, f0: float = 120.0) -> np.ndarray:
    """A synthetic vowel: a glottal pulse train through formants at 700, 1200 and 2600 Hz."""
    n = int(seconds * RATE)
    pulses = np.zeros(n)
    pulses[:: int(RATE / f0)] = 1.0
    signal = pulses
    for formant, bandwidth in ((700, 80), (1200, 90), (2600, 120)):
        radius = np.exp(-np.pi * bandwidth / RATE)
        angle = 2 * np.pi * formant / RATE
        signal = scipy.signal.lfilter([1.0], [1.0, -2 * radius * np.cos(angle), radius**2], signal)
    samples: np.ndarray = 0.3 * signal / np.max(np.abs(signal))
    return samples


def envelope_peaks(samples: np.ndarray) -> list[float]:
    """Frequencies (Hz) of the three strongest peaks of the clip's LPC envelope."""
    r = np.correlate(samples, samples, "full")[len(samples) - 1 : len(samples) + 12]
    a = levinson(r[None, :], 12)[0]
    freqs, response = scipy.signal.freqz([1.0], a, worN=2048, fs=RATE)
    magnitude = np.abs(response)
    peaks, _ = scipy.signal.find_peaks(magnitude)
    strongest = peaks[np.argsort(magnitude[peaks])[-3:]]
    return sorted(float(freqs[p]) for p in strongest)


def flac_of(samples: np.ndarray) -> bytes:
    return flac.encode_samples(samples, RATE)


def test_levinson_matches_a_toeplitz_solve() -> None:
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(4, 320))
    order = 10
    r = np.stack([np.correlate(f, f, "full")[319 : 319 + order + 1] for f in frames])
    ours = levinson(r, order)
    for row, got in zip(r, ours, strict=True):
        row = row.copy()
        row[0] = row[0] * (1 + 1e-6) + 1e-12  # the same conditioning as levinson
        expected = scipy.linalg.solve_toeplitz(row[:order], -row[1 : order + 1])
        np.testing.assert_allclose(got[1:], expected, rtol=1e-6, atol=1e-9)
        assert got[0] == 1.0


def test_pole_warping_by_one_keeps_the_polynomial() -> None:
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(3, 320))
    r = np.stack([np.correlate(f, f, "full")[319:340] for f in frames])
    lpc = levinson(r, 20)
    np.testing.assert_allclose(warp_poles(lpc, 1.0), lpc, atol=1e-8)
    warped = warp_poles(lpc, 0.8)
    assert not np.allclose(warped, lpc)
    # The warped filters stay stable: pole magnitudes are kept.
    assert np.all(np.abs(np.roots(warped[0])) < 1.0)


def test_mcadams_of_one_is_the_identity() -> None:
    x = vowel()
    np.testing.assert_allclose(mcadams_transform(x, RATE, alpha=1.0), x, atol=1e-8)


def test_mcadams_moves_formants_and_keeps_length() -> None:
    x = vowel()
    y = mcadams_transform(x, RATE, alpha=0.8)
    assert len(y) == len(x)
    before, after = envelope_peaks(x), envelope_peaks(y)
    assert before == pytest.approx([700, 1200, 2600], abs=60)
    # φ → φ^0.8 (φ in radians at 16 kHz) lifts every formant below 2546 Hz, lowers those above.
    expected = [((2 * np.pi * f / RATE) ** 0.8) * RATE / (2 * np.pi) for f in (700, 1200, 2600)]
    assert after == pytest.approx(expected, abs=100)


def test_mcadams_refuses_a_coefficient_outside_its_range() -> None:
    with pytest.raises(ValueError, match="McAdams"):
        mcadams_transform(vowel(), RATE, alpha=0.0)


def test_released_audio_is_canonical_flac_of_the_same_length_rate_and_level() -> None:
    original = flac_of(vowel())
    voice = VoiceAnonymizer(method="mcadams", alpha=(0.7, 0.9))
    released = voice.released_audio(original)
    decoded = flac.decode(released, sample_rate=RATE)
    assert decoded.problems == []
    assert flac.metadata_problems(flac.read_metadata(released)) == []
    assert flac.canonical_differences(released, flac.encode_canonical(decoded.pcm, RATE)) == []
    source, _ = decode_mono(original)
    out, rate = decode_mono(released)
    assert rate == RATE
    assert len(out) == len(source)
    level = float(np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(source**2)))
    assert level == pytest.approx(1.0, abs=0.02)
    assert envelope_peaks(out) != pytest.approx(envelope_peaks(source), abs=60)


def test_each_release_draws_afresh_and_a_seed_reproduces() -> None:
    original = flac_of(vowel())
    voice = VoiceAnonymizer(method="mcadams", alpha=(0.5, 0.95))
    fresh = {voice.released_audio(original) for _ in range(4)}
    assert len(fresh) == 4
    seeded = [voice.released_audio(original, rng=np.random.default_rng(7)) for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_none_releases_the_pending_bytes_unchanged() -> None:
    original = flac_of(vowel())
    voice = VoiceAnonymizer.from_policy(load_policy("default"))
    assert not voice.enabled
    assert voice.released_audio(original) is original
    assert voice.manifest_entry() == {"method": "none"}


def test_undecodable_bytes_are_unsupported_audio() -> None:
    with pytest.raises(UnsupportedAudio):
        VoiceAnonymizer(method="mcadams").released_audio(b"not audio at all")


def test_stereo_input_is_mixed_down() -> None:
    buffer = io.BytesIO()
    x = vowel()
    sf.write(buffer, np.stack([x, x], axis=1), RATE, format="WAV", subtype="PCM_16")
    released = VoiceAnonymizer(method="mcadams").released_audio(buffer.getvalue())
    assert flac.decode(released, sample_rate=RATE).problems == []


def test_stretch_frequency_moves_a_peak_by_the_factor() -> None:
    spectrum = np.zeros((1, 513))
    spectrum[0, 100] = 1.0
    stretched = stretch_frequency(spectrum, 1.2)
    assert int(np.argmax(stretched[0])) == 120
    np.testing.assert_allclose(stretch_frequency(spectrum, 1.0), spectrum)


@pytest.mark.skipif(not HAS_PYWORLD, reason="pyworld comes with the voice extra")
def test_world_shifts_formants_and_keeps_canonical_form() -> None:
    original = flac_of(vowel())
    voice = VoiceAnonymizer(method="world", pitch_octaves=(0.5, 0.5), formant_octaves=(0.2, 0.2))
    released = voice.released_audio(original, rng=np.random.default_rng(3))
    decoded = flac.decode(released, sample_rate=RATE)
    assert decoded.problems == []
    assert flac.canonical_differences(released, flac.encode_canonical(decoded.pcm, RATE)) == []
    source, _ = decode_mono(original)
    out, _ = decode_mono(released)
    assert len(out) == len(source)
    ratios = np.array(envelope_peaks(out)) / np.array(envelope_peaks(source))
    # The direction is drawn per clip; both ways the formants move by about 2^±0.2.
    assert np.all(np.abs(np.log2(ratios)) > 0.1)


def test_policy_ranges_are_checked() -> None:
    base = load_policy("default").model_dump()
    with pytest.raises(ValueError, match="voice_mcadams_alpha_min"):
        Policy.model_validate(
            {**base, "voice_mcadams_alpha_min": 0.9, "voice_mcadams_alpha_max": 0.8}
        )
    with pytest.raises(ValueError, match=r"less than or equal to 0\.95"):
        Policy.model_validate({**base, "voice_mcadams_alpha_max": 1.0})
    policy = Policy.model_validate({**base, "voice_anonymization": "mcadams"})
    assert VoiceAnonymizer.from_policy(policy).manifest_entry() == {
        "method": "mcadams",
        "alpha_range": [0.7, 0.9],
    }


def test_world_refuses_to_load_without_pyworld(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_find_spec = importlib.util.find_spec

    def without_pyworld(name: str, *args: object) -> object:
        return None if name == "pyworld" else real_find_spec(name)

    monkeypatch.setattr(importlib.util, "find_spec", without_pyworld)
    path = tmp_path / "world.toml"
    path.write_text('name = "w"\nversion = 1\nvoice_anonymization = "world"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="needs pyworld"):
        load_policy(str(path))
