"""N-gram keys and the array helpers the features are computed with, against plain Python."""

from __future__ import annotations

import numpy as np
import pytest

from reports_ml.ngram_keys import (
    bigram_keys,
    bigram_keys_of,
    boundary_keys,
    character_keys,
    in_sorted,
    in_sorted_beyond,
    quadgram_keys,
    runs,
    sorted_unique,
    trigram_keys,
)

TEXTS = ["rá gondolok", "", "a", "ab", "학생입니다", "ฉันเป็นนักเรียน"]


def test_bigram_keys_of_many_texts_are_those_of_each_text() -> None:
    texts = [[3, 1, 4], [], [1], [5, 9, 2, 6]]
    ids = np.array([i for text in texts for i in text], dtype=np.int64)
    lengths = np.array([len(text) for text in texts], dtype=np.int64)
    expected = np.unique(np.concatenate([bigram_keys(text) for text in texts]))
    assert np.array_equal(bigram_keys_of(ids, lengths), expected)
    assert len(bigram_keys_of(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))) == 0


def test_quadgrams_are_the_four_letter_windows_of_each_framed_text() -> None:
    keys, owner = quadgram_keys(TEXTS)
    windows = [
        (position, f" {text} "[i : i + 4])
        for position, text in enumerate(TEXTS)
        for i in range(len(text) - 1)
    ]
    assert owner.tolist() == [position for position, _ in windows]
    by_window: dict[str, int] = {}
    for (_, window), key in zip(windows, keys.tolist(), strict=True):
        assert by_window.setdefault(window, key) == key  # the same window, the same key
    assert len(set(by_window.values())) == len(by_window)  # distinct windows, distinct keys
    assert (keys >= 0).all()


def test_trigram_owners_follow_the_texts() -> None:
    _, owner = trigram_keys(TEXTS)
    assert owner.tolist() == [i for i, text in enumerate(TEXTS) for _ in range(len(text))]


def test_boundary_keys_tell_how_a_text_begins_and_ends() -> None:
    keys = boundary_keys(["rá gondolok", "rá", "gondolok", "", "r"])
    start, end = keys[:, 0], keys[:, 1]
    assert start[0] == start[1] != start[2]  # both begin with "rá"
    assert end[0] == end[2] != end[1]  # both end with "ok"
    assert keys[3].tolist() == [-1, -1]  # nothing to begin or end with
    assert start[4] == end[4]  # one letter both begins and ends the text
    assert start[0] not in trigram_keys(["rá gondolok"])[0]  # marked: never an inner trigram


def test_character_keys_are_the_sorted_unique_keys_of_each_kind() -> None:
    texts = [*TEXTS, "a\nb", "rá gondolok"]
    trigrams, quadgrams, boundaries = character_keys(texts)
    assert np.array_equal(trigrams, np.unique(trigram_keys(texts)[0]))
    assert np.array_equal(quadgrams, np.unique(quadgram_keys(texts)[0]))
    assert np.array_equal(boundaries, np.unique(boundary_keys(texts)))
    assert all(len(keys) == 0 and keys.dtype == np.int64 for keys in character_keys([]))


def test_runs_count_and_measure_stretches_of_true_flags() -> None:
    flags = np.array([1, 1, 0, 1, 0, 0, 1, 1, 1, 1], dtype=bool)
    owner = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 3])
    count, longest = runs(flags, owner, 5)
    assert count.tolist() == [2, 0, 1, 1, 0]  # a run never crosses from one owner to the next
    assert longest.tolist() == [2, 0, 3, 1, 0]
    assert runs(np.zeros(3, dtype=bool), np.zeros(3, dtype=np.int64), 1)[0].tolist() == [0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sorted_lookups_agree_with_python_sets(seed: int) -> None:
    rng = np.random.default_rng(seed)
    keys = sorted_unique(rng.integers(0, 400, 300))
    assert np.array_equal(keys, np.unique(keys))
    values = rng.integers(-5, 450, 500)
    expected = np.array([value in set(keys.tolist()) for value in values.tolist()], dtype=float)
    assert np.array_equal(in_sorted(values, keys), expected)
    # A subset of the keys found first (as a prompt's are found before its course's).
    prompt = keys[::3]
    found = in_sorted(values, prompt)
    assert np.array_equal(in_sorted_beyond(values, found, keys), expected)
