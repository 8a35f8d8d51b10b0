"""Class-wise normalisation over a release: speakers' per-class colouring goes, content stays."""

from __future__ import annotations

import numpy as np
import pytest

from policies import flac
from policies.pseudo_classes import (
    class_normalised,
    neighbour_replaced,
    release_classes,
    release_frames,
)
from policies.voice import VoiceAnonymizer, decode_mono
from tests.policies.test_voice_pseudo import RATE, speaker

BINS = 65
FRAMES_PER_SOUND = 30


def _sounds(rng: np.random.Generator) -> np.ndarray:
    """Three well-separated smooth log envelopes: the 'phones' a release's words are made of."""
    raw = rng.normal(0.0, 4.0, (3, BINS))
    kernel = np.hanning(9) / np.hanning(9).sum()
    return np.stack([np.convolve(row, kernel, mode="same") for row in raw])


def _clip(
    sounds: np.ndarray, order: list[int], colouring: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A clip saying ``order`` of the sounds, each coloured by the speaker's own offset for
    that sound, frame by frame with a little noise."""
    frames = [
        sounds[s] + colouring[s] + rng.normal(0.0, 0.05, (FRAMES_PER_SOUND, BINS)) for s in order
    ]
    return np.concatenate(frames)


def test_speakers_lose_their_per_class_colouring_and_keep_their_words() -> None:
    rng = np.random.default_rng(0)
    sounds = _sounds(rng)
    orders = ([0, 1, 2], [2, 0, 1], [1, 2, 0], [0, 2, 1])
    colourings = [rng.normal(0.0, 0.6, (3, BINS)) for _ in orders]
    clips = [_clip(sounds, o, c, rng) for o, c in zip(orders, colourings, strict=True)]
    classes = release_classes(clips, classes=3, rng=np.random.default_rng(1))
    assert classes is not None
    assert "means" not in repr(classes)
    voiced = np.ones(3 * FRAMES_PER_SOUND, dtype=bool)
    moved = [class_normalised(c, voiced, classes, share=1.0) for c in clips]

    def spread_between_speakers(released: list[np.ndarray], sound: int) -> float:
        """How far apart the speakers' renderings of one sound are (rms over bins)."""
        means = []
        for clip, order in zip(released, orders, strict=True):
            at = order.index(sound) * FRAMES_PER_SOUND
            means.append(clip[at : at + FRAMES_PER_SOUND].mean(axis=0))
        return float(np.sqrt(np.mean(np.var(np.stack(means), axis=0))))

    for sound in range(3):
        before = spread_between_speakers(clips, sound)
        after = spread_between_speakers(moved, sound)
        assert after < before / 4
    # Every frame still says the sound it said, in its own clip's order.
    for clip, order in zip(moved, orders, strict=True):
        nearest = np.argmin(((clip[:, None, :] - sounds[None]) ** 2).sum(axis=2), axis=1)
        assert list(nearest) == list(np.repeat(order, FRAMES_PER_SOUND))
    # Each frame's own movement within its sound is kept.
    for before_clip, after_clip in zip(clips, moved, strict=True):
        np.testing.assert_allclose(
            np.diff(after_clip[:FRAMES_PER_SOUND], axis=0),
            np.diff(before_clip[:FRAMES_PER_SOUND], axis=0),
            atol=0.02,
        )


def test_a_share_of_zero_and_unvoiced_frames_are_left_alone() -> None:
    rng = np.random.default_rng(2)
    sounds = _sounds(rng)
    clips = [_clip(sounds, [0, 1, 2], rng.normal(0.0, 0.6, (3, BINS)), rng) for _ in range(2)]
    classes = release_classes(clips, classes=3, rng=np.random.default_rng(3))
    assert classes is not None
    voiced = np.zeros(3 * FRAMES_PER_SOUND, dtype=bool)
    voiced[:FRAMES_PER_SOUND] = True
    assert class_normalised(clips[0], voiced, classes, share=0.0) is clips[0]
    moved = class_normalised(clips[0], voiced, classes, share=1.0)
    np.testing.assert_array_equal(moved[~voiced], clips[0][~voiced])
    assert not np.allclose(moved[voiced], clips[0][voiced])
    with pytest.raises(ValueError, match="share"):
        class_normalised(clips[0], voiced, classes, share=1.5)


def test_a_release_with_too_few_frames_has_no_classes() -> None:
    assert release_classes([np.zeros((5, BINS))], classes=4, rng=np.random.default_rng(0)) is None
    with pytest.raises(ValueError, match="classes"):
        release_classes([np.zeros((5, BINS))], classes=0, rng=np.random.default_rng(0))


def test_the_release_pass_finds_classes_without_retiming_and_keeps_durations() -> None:
    samples = [speaker(95.0, formant_scale=0.92, seed=1), speaker(230.0, seconds=0.6, seed=2)]
    clips = [flac.encode_samples(s, RATE) for s in samples]
    plain = VoiceAnonymizer(method="pseudo_voice").for_release(np.random.default_rng(4))
    assert not plain.averages
    voice = VoiceAnonymizer(method="pseudo_voice", class_share=1.0, release_class_count=4)
    voice = voice.for_release(np.random.default_rng(4))
    assert voice.averages
    voice = voice.averaged_over(clips)
    assert voice.release_classes is not None
    assert RATE in voice.release_classes
    assert voice.release_envelopes is None
    assert "release_classes" not in repr(voice)
    neighbours = VoiceAnonymizer(method="pseudo_voice", neighbour_share=1.0)
    neighbours = neighbours.for_release(np.random.default_rng(4))
    assert neighbours.averages
    neighbours = neighbours.averaged_over(clips)
    assert neighbours.release_frames is not None
    assert sorted(neighbours.pool_owners.values()) == [0, 1]
    assert "release_frames" not in repr(neighbours)
    for clip, original in zip(clips, samples, strict=True):
        unmoved = decode_mono(plain.released_audio(clip, rng=np.random.default_rng(5)))[0]
        for moved in (voice, neighbours):
            released = decode_mono(moved.released_audio(clip, rng=np.random.default_rng(5)))[0]
            assert len(released) == len(original)
            assert not np.allclose(released, unmoved)


def test_neighbours_give_each_frame_another_speakers_rendering_of_the_same_sound() -> None:
    rng = np.random.default_rng(6)
    sounds = _sounds(rng)
    orders = ([0, 1, 2], [2, 0, 1])
    colourings = [rng.normal(0.0, 0.6, (3, BINS)) for _ in orders]
    clips = [_clip(sounds, o, c, rng) for o, c in zip(orders, colourings, strict=True)]
    pool = release_frames(clips, rng=np.random.default_rng(7))
    assert pool is not None
    assert "envelopes" not in repr(pool)
    voiced = np.ones(3 * FRAMES_PER_SOUND, dtype=bool)
    moved = neighbour_replaced(clips[0], voiced, pool, owner=0, share=1.0)
    for place, sound in enumerate(orders[0]):
        frames = moved[place * FRAMES_PER_SOUND : (place + 1) * FRAMES_PER_SOUND]
        other = sounds[sound] + colourings[1][sound]
        other = other - other.mean() + frames.mean()  # the frame keeps its own level
        own = sounds[sound] + colourings[0][sound]
        assert np.abs(frames.mean(axis=0) - other).mean() < 0.1
        assert np.abs(frames.mean(axis=0) - own).mean() > 0.3
    # Without its owner's number a clip would find its own frames first.
    itself = neighbour_replaced(clips[0], voiced, pool, owner=None, share=1.0)
    assert np.abs(itself - clips[0]).mean() < 0.1
    assert neighbour_replaced(clips[0], voiced, pool, owner=0, share=0.0) is clips[0]


def test_a_release_of_one_clip_has_no_pool() -> None:
    assert release_frames([np.zeros((10, BINS))], rng=np.random.default_rng(0)) is None
    assert release_frames([], rng=np.random.default_rng(0)) is None
