"""Source-word and target-word associations of a course, against counting by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reports_ml.cooccurrence import TranslationCounts, translation_columns

# A toy course: English prompts and their accepted Hungarian words.
COURSE = [
    (["cat", "sleeps"], ["macska", "alszik"]),
    (["dog", "runs"], ["kutya", "fut"]),
    (["big", "dog"], ["nagy", "kutya"]),
    (["cat", "eats"], ["macska", "eszik", "cica"]),
    (["bird", "sleeps"], ["madár", "alszik"]),
    (["child", "sleeps"], ["gyerek", "alszik"]),
    (["dog", "eats"], ["kutya", "eszik"]),
    (["small", "cat"], ["kis", "cica"]),
]


def _counts() -> tuple[TranslationCounts, dict[str, int]]:
    counts = TranslationCounts()
    target_id: dict[str, int] = {}
    for sources, targets in COURSE:
        ids = np.array([target_id.setdefault(t, len(target_id)) for t in targets])
        counts.add(sources, ids)
    return counts, target_id


def _cosine_without(prompt: int, source: str, target: str) -> float:
    """The association by hand: prompt sets of the two words, ``prompt`` left out."""
    others = [pair for k, pair in enumerate(COURSE) if k != prompt]
    with_source = {k for k, (sources, _) in enumerate(others) if source in sources}
    with_target = {k for k, (_, targets) in enumerate(others) if target in targets}
    both = len(with_source & with_target)
    return both / math.sqrt(len(with_source) * len(with_target)) if both else 0.0


def test_association_leaves_the_asked_prompt_out() -> None:
    counts, target_id = _counts()
    prompt = 0
    sources = counts.source_ids(COURSE[prompt][0])
    targets = sorted(target_id, key=target_id.__getitem__)
    own = np.array([t in COURSE[prompt][1] for t in targets], dtype=float)
    got = counts.association(sources, np.arange(len(targets)), own)
    for i, source in enumerate(COURSE[prompt][0]):
        for j, target in enumerate(targets):
            assert got[i, j] == pytest.approx(_cosine_without(prompt, source, target))
    assert got[0, target_id["macska"]] > 0  # "cat" -> "macska", seen in the fourth prompt
    assert got[0, target_id["kutya"]] == 0  # never with "cat"
    assert got[1, target_id["alszik"]] == 1.0  # "sleeps" -> "alszik" wherever either stands


def test_unknown_words_and_a_prompt_counted_twice_give_no_association() -> None:
    counts, target_id = _counts()
    sources = counts.source_ids(["cat", "zebra"])
    assert sources[1] == -1
    got = counts.association(sources, np.array([target_id["macska"], -1]), np.zeros(2))
    assert got[1].tolist() == [0.0, 0.0]
    assert got[0, 1] == 0.0
    assert counts.pairs(sources, np.array([target_id["macska"]]))[0, 0] == 2


def _columns(answers: list[list[str]]) -> dict[str, np.ndarray]:
    """Features of answers to the first prompt ("cat sleeps" -> "macska alszik")."""
    counts, target_id = _counts()
    sources, accepted = COURSE[0]
    flat = [word for answer in answers for word in answer]
    return translation_columns(
        counts,
        counts.source_ids(sources),
        np.array([target_id[t] for t in accepted]),
        np.array([target_id.get(word, -1) for word in flat]),
        np.array([word in accepted for word in flat]),
        np.repeat(np.arange(len(answers)), [len(answer) for answer in answers]),
        len(answers),
    )


def test_a_word_translating_another_prompt_and_a_left_out_source_word() -> None:
    right, synonym, other_prompt, empty = range(4)
    columns = _columns([["macska", "alszik"], ["cica", "alszik"], ["kutya", "alszik"], []])
    foreign = columns["new_words_foreign"]
    assert foreign[right] == foreign[synonym] == 0  # "cica" stands with "cat" elsewhere
    assert foreign[other_prompt] == 1  # "kutya" translates "dog"
    assert columns["new_words_least_explained"][other_prompt] == 0.0
    assert columns["new_words_least_explained"][synonym] > 0.5
    left_out = columns["source_words_left_out"]
    assert left_out[right] == 0
    assert left_out[other_prompt] >= 1  # nothing renders "cat"
    assert left_out[empty] == columns["source_words_rendered"][empty] > 0
    assert np.isfinite(np.column_stack(list(columns.values()))).all()
