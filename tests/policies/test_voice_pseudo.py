"""The release's pseudo-voice: every clip of a release comes out in one drawn voice."""

from __future__ import annotations

import hashlib
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from policies import flac
from policies.policy import Policy, load_policy
from policies.pseudo_prosody import LEAD_S, stylised_f0
from policies.pseudo_voice import (
    Prosody,
    PseudoVoice,
    convert,
    draw_pseudo_voice,
    third_formant_warp,
    warp_envelopes,
)
from policies.voice import VoiceAnonymizer, decode_mono
from policies.voice_analysis import HOP_S, Grid, _mel_smoothing, analyse

RATE = 16000


def speaker(
    f0: float,
    *,
    formant_scale: float = 1.0,
    tilt: float = 0.0,
    seconds: float = 0.8,
    seed: int = 0,
) -> np.ndarray:
    """A synthetic voiced clip: a glottal pulse train with a gentle F0 fall and 1 % jitter,
    through formants at 600/1400/2500/3300 Hz × ``formant_scale``, with a first-order tilt
    (``tilt`` > 0 darkens), preceded and followed by quiet noise (a room)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    contour = f0 * np.linspace(1.1, 0.9, n) * (1 + 0.01 * rng.standard_normal(n))
    phase = np.cumsum(contour / RATE)
    signal = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(float)
    for formant, bandwidth in ((600, 80), (1400, 90), (2500, 120), (3300, 150)):
        radius = np.exp(-np.pi * bandwidth / RATE)
        angle = 2 * np.pi * formant * formant_scale / RATE
        signal = scipy.signal.lfilter([1.0], [1.0, -2 * radius * np.cos(angle), radius**2], signal)
    if tilt:
        signal = scipy.signal.lfilter([1.0], [1.0, -tilt], signal)
    signal = 0.3 * signal / np.max(np.abs(signal))
    room = 0.001 * rng.standard_normal(RATE // 5)
    return np.concatenate([room, signal, room])


def median_f0(samples: np.ndarray) -> float:
    analysis = analyse(samples, Grid.for_rate(RATE), high_hz=3800.0)
    return float(np.median(analysis.f0_hz[analysis.voiced]))


def long_term_db(samples: np.ndarray, low: float = 300.0, high: float = 3300.0) -> np.ndarray:
    """Welch spectrum (dB) of ``samples`` over [low, high] Hz, mean level removed."""
    frequencies, power = scipy.signal.welch(samples, RATE, nperseg=512)
    band = (frequencies >= low) & (frequencies <= high)
    level = 10 * np.log10(power[band] + 1e-20)
    return np.asarray(level - level.mean())


def tilt_db_per_octave(samples: np.ndarray) -> float:
    frequencies, power = scipy.signal.welch(samples, RATE, nperseg=512)
    band = (frequencies >= 300.0) & (frequencies <= 3300.0)
    return float(np.polyfit(np.log2(frequencies[band]), 10 * np.log10(power[band]), 1)[0])


TARGET = PseudoVoice(
    f0_hz=150.0,
    f0_spread_octaves=0.1,
    formant_scale=1.0,
    tilt_db_per_octave=-7.0,
    bandwidth_hz=3700.0,
    voicing_limit_hz=3000.0,
)


def test_mel_band_powers_match_a_dense_triangular_filterbank() -> None:
    grid = Grid.for_rate(RATE)
    smoothing = _mel_smoothing(RATE, grid.n_fft, grid.n_envelope, 3700)
    frequencies = grid.frequencies
    mel = 2595.0 * np.log10(1.0 + frequencies / 700.0)
    edges_mel = np.linspace(2595.0 * np.log10(1 + 80 / 700), 2595.0 * np.log10(1 + 3700 / 700), 32)
    power = np.random.default_rng(0).random((7, len(frequencies)))
    expected = []
    for band in range(30):
        low, centre, high = edges_mel[band : band + 3]
        hz = 700.0 * (10.0 ** (np.array([low, centre, high]) / 2595.0) - 1.0)
        weights = np.clip(
            np.minimum(
                (frequencies - hz[0]) / (hz[1] - hz[0]), (hz[2] - frequencies) / (hz[2] - hz[1])
            ),
            0.0,
            None,
        )
        weights[(mel <= low) | (mel >= high)] = 0.0
        expected.append(power @ weights / weights.sum())
    np.testing.assert_allclose(
        smoothing.band_power(power.astype(np.float32)), np.stack(expected, axis=1), rtol=2e-3
    )


@pytest.mark.parametrize("f0", [90.0, 130.0, 210.0, 300.0])
def test_pitch_tracker_finds_the_fundamental(f0: float) -> None:
    assert median_f0(speaker(f0)) == pytest.approx(f0, rel=0.04)


def test_two_voices_come_out_with_the_targets_pitch_and_tilt() -> None:
    low_dark = speaker(95.0, formant_scale=0.95, tilt=0.7, seed=1)
    high_bright = speaker(230.0, formant_scale=1.08, tilt=-0.3, seed=2)
    rng = np.random.default_rng(3)
    outputs = [convert(x, RATE, TARGET, rng=rng) for x in (low_dark, high_bright)]
    for source, out in zip((low_dark, high_bright), outputs, strict=True):
        assert len(out) == len(source)
        assert np.all(np.isfinite(out))
        assert median_f0(out) == pytest.approx(TARGET.f0_hz, rel=0.06)
        assert tilt_db_per_octave(out) == pytest.approx(TARGET.tilt_db_per_octave, abs=2.5)
    # Their long-term spectra end up far closer than they began.
    before = np.sqrt(np.mean((long_term_db(low_dark) - long_term_db(high_bright)) ** 2))
    after = np.sqrt(np.mean((long_term_db(outputs[0]) - long_term_db(outputs[1])) ** 2))
    assert after < before / 2


def test_strength_zero_keeps_the_clips_own_pitch() -> None:
    x = speaker(220.0)
    out = convert(x, RATE, TARGET, rng=np.random.default_rng(0), strength=0.0)
    assert median_f0(out) == pytest.approx(220.0, rel=0.05)


def test_nothing_above_the_targets_bandwidth_is_released() -> None:
    noisy = speaker(120.0) + 0.02 * np.random.default_rng(4).standard_normal(len(speaker(120.0)))
    out = convert(noisy, RATE, TARGET, rng=np.random.default_rng(5))
    frequencies, power = scipy.signal.welch(out, RATE, nperseg=1024)
    inside = power[(frequencies > 500) & (frequencies < 3000)].mean()
    above = power[frequencies > TARGET.bandwidth_hz + 400].mean()
    assert 10 * np.log10(above / inside) < -50


def test_quiet_room_noise_becomes_the_targets_floor() -> None:
    x = speaker(120.0)
    out = convert(x, RATE, TARGET, rng=np.random.default_rng(6))
    room = slice(0, RATE // 5 - 400)
    speech = slice(RATE // 5 + 800, RATE // 5 + 8000)
    out_gap = 10 * np.log10(np.mean(out[speech] ** 2) / np.mean(out[room] ** 2))
    assert out_gap > 40


def test_silence_and_unvoiced_clips_come_through() -> None:
    rng = np.random.default_rng(7)
    for samples in (np.zeros(RATE // 2), 0.1 * rng.standard_normal(RATE // 2), np.zeros(1)):
        out = convert(samples, RATE, TARGET, rng=rng)
        assert len(out) == len(samples)
        assert np.all(np.isfinite(out))
    assert len(convert(np.zeros(0), RATE, TARGET, rng=rng)) == 0


@pytest.mark.parametrize("rate", [8000, 22050, 48000])
def test_other_sample_rates_keep_length_and_get_the_targets_pitch(rate: int) -> None:
    x = scipy.signal.resample_poly(speaker(110.0), rate, RATE)
    out = convert(x, rate, TARGET, rng=np.random.default_rng(8))
    assert len(out) == len(x)
    analysis = analyse(out, Grid.for_rate(rate), high_hz=0.45 * rate)
    assert float(np.median(analysis.f0_hz[analysis.voiced])) == pytest.approx(150.0, rel=0.06)


def test_vocal_tract_warp_brings_the_third_formant_to_the_targets() -> None:
    grid = Grid.for_rate(RATE)
    warps = []
    for scale in (0.92, 1.0, 1.08):
        analysis = analyse(speaker(150.0, formant_scale=scale), grid, high_hz=3700.0)
        warps.append(
            third_formant_warp(analysis.envelopes[analysis.voiced], grid.envelope_frequencies, 0.95)
        )
        # The neutral tube's F3 (2.5 kHz) × 0.95 over this voice's F3 (2.5 kHz × scale); the
        # smoothed envelope reads F3 a little low, so the warp errs upwards, by < 0.1 octave.
        assert np.log2(warps[-1]) == pytest.approx(np.log2(0.95 / scale), abs=0.1)
    assert warps[0] > warps[1] > warps[2]
    envelopes = np.zeros((2, 65))
    envelopes[:, 20] = 1.0
    assert int(np.argmax(warp_envelopes(envelopes, 1.2)[0])) == 24


def test_one_target_per_release_drawn_from_the_csprng_and_never_shown() -> None:
    policy = _pseudo_voice_policy()
    first, second = (VoiceAnonymizer.from_policy(policy) for _ in range(2))
    assert first.target is not None
    assert second.target is not None
    assert first.target != second.target
    assert "PseudoVoice(<" in repr(first.target)
    assert str(first.target.f0_hz) not in repr(first) + repr(first.target)
    assert first.manifest_entry()["method"] == "pseudo_voice"
    # Every clip of one release is mapped onto the same target.
    clips = [flac.encode_samples(speaker(f0, seed=i), RATE) for i, f0 in enumerate((95, 230))]
    released = [decode_mono(first.released_audio(c))[0] for c in clips]
    pitches = [median_f0(r) for r in released]
    assert pitches[0] == pytest.approx(first.target.f0_hz, rel=0.06)
    assert pitches[1] == pytest.approx(first.target.f0_hz, rel=0.06)


def test_released_audio_is_canonical_flac_of_the_same_length_and_level() -> None:
    original = flac.encode_samples(speaker(120.0), RATE)
    voice = VoiceAnonymizer.from_policy(_pseudo_voice_policy())
    released = voice.released_audio(original)
    decoded = flac.decode(released, sample_rate=RATE)
    assert decoded.problems == []
    assert flac.canonical_differences(released, flac.encode_canonical(decoded.pcm, RATE)) == []
    source, _ = decode_mono(original)
    out, rate = decode_mono(released)
    assert (rate, len(out)) == (RATE, len(source))
    level = float(np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(source**2)))
    assert level == pytest.approx(1.0, abs=0.02)


def test_a_seed_reproduces_a_release_and_threads_change_nothing() -> None:
    policy = _pseudo_voice_policy()
    clips = [
        flac.encode_samples(speaker(f0, seed=i), RATE) for i, f0 in enumerate((100, 140, 180, 220))
    ]
    voice = VoiceAnonymizer.from_policy(policy, rng=np.random.default_rng(11))
    again = VoiceAnonymizer.from_policy(policy, rng=np.random.default_rng(11))
    assert voice.target == again.target

    def release(clip_and_seed: tuple[bytes, int]) -> bytes:
        clip, seed = clip_and_seed
        return voice.released_audio(clip, rng=np.random.default_rng(seed))

    jobs = [(clip, seed) for seed, clip in enumerate(clips)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(release, jobs * 3))
    assert threaded == [release(job) for job in jobs] * 3


def test_draws_stay_within_the_documented_ranges() -> None:
    rng = np.random.default_rng(12)
    for _ in range(200):
        target = draw_pseudo_voice(rng)
        assert 100.0 <= target.f0_hz <= 200.0
        assert 0.95 <= target.formant_scale <= 1.10
        assert -9.0 <= target.tilt_db_per_octave <= -5.0
        assert 3500.0 <= target.bandwidth_hz <= 3900.0


def test_out_of_range_shares_are_refused() -> None:
    with pytest.raises(ValueError, match="strength"):
        convert(speaker(120.0), RATE, TARGET, rng=np.random.default_rng(0), strength=1.5)
    with pytest.raises(ValueError, match="vocal_tract_share"):
        convert(speaker(120.0), RATE, TARGET, rng=np.random.default_rng(0), vocal_tract_share=-0.1)


def test_pseudo_voice_needs_no_extra_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_find_spec = importlib.util.find_spec

    def without_pyworld(name: str, *args: object) -> object:
        return None if name == "pyworld" else real_find_spec(name)

    monkeypatch.setattr(importlib.util, "find_spec", without_pyworld)
    path = tmp_path / "p.toml"
    path.write_text(
        'name = "p"\nversion = 1\nvoice_anonymization = "pseudo_voice"\n', encoding="utf-8"
    )
    assert load_policy(str(path)).voice_anonymization == "pseudo_voice"


def _pseudo_voice_policy() -> Policy:
    base = load_policy("demo").model_dump()
    return Policy.model_validate({**base, "voice_anonymization": "pseudo_voice"})


def test_the_research_command_maps_a_folder_onto_one_voice_reproducibly(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from chorus.cli import app

    source = tmp_path / "src"
    source.mkdir()
    for i, f0 in enumerate((95.0, 230.0)):
        (source / f"clip{i}.flac").write_bytes(flac.encode_samples(speaker(f0, seed=i), RATE))
    policy = tmp_path / "p.toml"
    policy.write_text(
        'name = "p"\nversion = 1\nvoice_anonymization = "pseudo_voice"\n', encoding="utf-8"
    )
    runner = CliRunner()
    for out in ("a", "b"):
        result = runner.invoke(
            app,
            [
                "audio",
                "anonymize",
                str(source),
                "--out",
                str(tmp_path / out),
                "--policy",
                str(policy),
                "--seed",
                "4",
            ],
        )
        assert result.exit_code == 0, result.output
    outputs = [
        [(tmp_path / out / f"clip{i}.flac").read_bytes() for i in range(2)] for out in ("a", "b")
    ]
    assert outputs[0] == outputs[1]
    pitches = [median_f0(decode_mono(data)[0]) for data in outputs[0]]
    assert pitches[0] == pytest.approx(pitches[1], rel=0.08)


# --- what the release gives every clip besides the voice (policies.pseudo_prosody) ----------


def _voiced_span_s(samples: np.ndarray) -> tuple[float, float]:
    analysis = analyse(samples, Grid.for_rate(RATE), high_hz=3700.0)
    frames = np.flatnonzero(analysis.voiced)
    return float(frames[0] * HOP_S), float((frames[-1] + 1) * HOP_S)


def _with_fricative(samples: np.ndarray, seconds: float, seed: int) -> np.ndarray:
    """``samples`` with a loud noise burst (an unvoiced onset, as in "six") before the voicing."""
    room = samples[: RATE // 5]
    noise = 0.05 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    return np.concatenate([room, noise, samples[RATE // 5 :]])


def test_retiming_gives_every_clip_the_release_duration_and_voicing_span() -> None:
    # A quick speaker with a short unvoiced onset and a slow one with a long one.
    quick = _with_fricative(speaker(110.0, seconds=0.4, seed=1), 0.05, seed=1)
    slow = _with_fricative(speaker(220.0, seconds=1.2, seed=2), 0.25, seed=2)
    before = [_voiced_span_s(x) for x in (quick, slow)]
    assert abs(before[0][0] - before[1][0]) > 0.15
    prosody = Prosody(duration_s=0.9, timing="anchored")
    span = 0.9 - 2 * LEAD_S
    for seed, clip in enumerate((quick, slow)):
        out = convert(clip, RATE, TARGET, rng=np.random.default_rng(seed), prosody=prosody)
        assert len(out) == round(0.9 * RATE)
        assert np.all(np.isfinite(out))
        onset, offset = _voiced_span_s(out)
        assert onset == pytest.approx(LEAD_S + TARGET.onset_share * span, abs=0.03)
        # The pulse train's ring-out is loud but unvoiced: an unvoiced offset, anchored too.
        assert offset == pytest.approx(LEAD_S + (1 - TARGET.offset_share) * span, abs=0.03)
        assert median_f0(out) == pytest.approx(TARGET.f0_hz, rel=0.06)
        # The lead-in is the target's floor, whatever silence the speaker left.
        lead = out[: round(0.8 * LEAD_S * RATE)]
        voiced = out[round(onset * RATE) : round(offset * RATE)]
        assert 10 * np.log10(np.mean(voiced**2) / np.mean(lead**2)) > 40


def test_stylised_intonation_replaces_the_speakers_contour() -> None:
    frames = np.arange(60)
    voiced = (frames >= 5) & (frames < 55)
    rising = np.where(voiced, 150.0 * np.exp2(np.linspace(-0.3, 0.3, 60)), 0.0)
    out = stylised_f0(
        rising, voiced, level_hz=150.0, fall_octaves=0.2, rise_fall_octaves=0.0, share=1.0
    )
    assert np.all(out[~voiced] == 0.0)
    contour = np.log2(out[voiced] / 150.0)
    assert contour[0] == pytest.approx(0.1, abs=1e-9)
    assert contour[-1] == pytest.approx(-0.1, abs=1e-9)
    half = stylised_f0(
        rising, voiced, level_hz=150.0, fall_octaves=0.2, rise_fall_octaves=0.0, share=0.5
    )
    own = np.log2(rising[voiced][-1] / 150.0)
    assert np.log2(half[voiced][-1] / 150.0) == pytest.approx(0.5 * own - 0.5 * 0.1, abs=1e-9)


def _envelopes_db(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    analysis = analyse(samples, Grid.for_rate(RATE), high_hz=3500.0)
    band = (Grid.for_rate(RATE).envelope_frequencies >= 300.0) & (
        Grid.for_rate(RATE).envelope_frequencies <= 3300.0
    )
    return analysis.envelopes[:, band] / np.log(10) * 10, analysis.voiced


def _distance_db(first: np.ndarray, second: np.ndarray) -> float:
    """RMS difference (dB) of two clips' envelopes over the frames voiced in both."""
    (one, voiced_one), (other, voiced_other) = _envelopes_db(first), _envelopes_db(second)
    both = voiced_one & voiced_other
    assert both.sum() > 30
    return float(np.sqrt(np.mean((one[both] - other[both]) ** 2)))


def test_averaging_gives_a_release_one_set_of_spectral_frames() -> None:
    # Two vocal tracts 0.23 octave apart, darker and brighter: what the long-term mapping
    # alone leaves in every frame (formant positions) is what averaging must take away.
    clips = [
        flac.encode_samples(speaker(95.0, formant_scale=0.92, tilt=0.6, seed=1), RATE),
        flac.encode_samples(speaker(230.0, formant_scale=1.08, tilt=-0.3, seed=2), RATE),
    ]
    own = (
        VoiceAnonymizer(method="pseudo_voice", timing="anchored")
        .for_release(np.random.default_rng(3))
        .retimed_to(0.8)
    )
    assert not own.averages
    averaged = replace(own, averaging_share=1.0)
    assert averaged.averages
    averaged = averaged.averaged_over(clips)
    assert averaged.release_envelopes is not None
    assert "release_envelopes" not in repr(averaged)

    def frame_distances_db(voice: VoiceAnonymizer) -> tuple[float, float]:
        """Between the two speakers' released clips, and between two takes of one clip."""
        takes = [
            [decode_mono(voice.released_audio(c, rng=np.random.default_rng(s)))[0] for c in clips]
            for s in (4, 5)
        ]
        assert {len(out) for take in takes for out in take} == {round(0.8 * RATE)}
        return _distance_db(takes[0][0], takes[0][1]), _distance_db(takes[0][0], takes[1][0])

    own_between, own_takes = frame_distances_db(own)
    averaged_between, averaged_takes = frame_distances_db(averaged)
    # What sets the two speakers apart beyond the vocoder's own noise floor more than halves.
    assert averaged_between - averaged_takes < (own_between - own_takes) / 2
    assert own_between > 3 * own_takes


def test_the_best_measured_point_is_an_option_and_not_the_default() -> None:
    assert not VoiceAnonymizer.from_policy(load_policy("default")).enabled
    plain = VoiceAnonymizer.from_policy(_pseudo_voice_policy())
    assert not plain.retimes
    assert plain.retimed_to(0.7).duration_s is None
    policy = Policy.model_validate(
        {
            **_pseudo_voice_policy().model_dump(),
            "voice_pseudo_timing": "anchored",
            "voice_pseudo_averaging": 0.9,
        }
    )
    voice = VoiceAnonymizer.from_policy(policy)
    assert voice.retimes
    assert voice.manifest_entry() == {
        "method": "pseudo_voice",
        "timing": "anchored",
        "averaging_share": 0.9,
    }
    # The duration is the release's, set once its clips are planned.
    assert voice.duration_s is None
    assert not voice.averages
    assert voice.retimed_to(0.7).averages
    with pytest.raises(ValueError, match="duration"):
        voice.retimed_to(0.0)


def test_averaging_needs_a_common_timing() -> None:
    base = load_policy("demo").model_dump()
    with pytest.raises(ValueError, match="voice_pseudo_averaging"):
        Policy.model_validate({**base, "voice_pseudo_timing": "own", "voice_pseudo_averaging": 0.5})
    kept = Policy.model_validate(
        {
            **base,
            "voice_anonymization": "pseudo_voice",
            "voice_pseudo_timing": "own",
            "voice_pseudo_averaging": 0.0,
        }
    )
    voice = VoiceAnonymizer.from_policy(kept).retimed_to(0.7)
    assert not voice.retimes
    assert voice.manifest_entry() == {"method": "pseudo_voice"}


def test_clips_kept_from_the_averaging_pass_are_released_as_if_analysed_again() -> None:
    clips = [flac.encode_samples(speaker(f0, seed=i), RATE) for i, f0 in enumerate((100, 200))]
    voice = (
        VoiceAnonymizer(method="pseudo_voice", timing="anchored", averaging_share=0.9)
        .for_release(np.random.default_rng(6))
        .retimed_to(0.7)
        .averaged_over(clips)
    )
    assert set(voice.kept_mapped) == {hashlib.sha256(c).digest() for c in clips}
    again = replace(voice, kept_mapped={})
    for clip in clips:
        released = voice.released_audio(clip, rng=np.random.default_rng(7))
        assert released == again.released_audio(clip, rng=np.random.default_rng(7))
        assert flac.duration_s(released) == pytest.approx(0.7, abs=1 / RATE)
