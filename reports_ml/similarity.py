"""Similarity features of answers against their prompt's accepted translations, by the batch.

Nothing here reads a language's words: every feature compares the answer with the prompt's own
accepted translations (and the course's other accepted translations), at character level and
at word level, so the features mean the same for Hungarian, Korean or Thai.

``PromptIndex`` holds what is looked up about one prompt's accepted list, built once;
``similarity_features`` computes, for one prompt's reports at a time, the ``DENSE_FEATURES``
block and the names of the answers' hashed features. Distances come from rapidfuzz's
``process.cdist`` (compiled, one call per prompt and measure): characters are compared in
canonical decomposition (NFD), so a missing accent or a wrong Hangul jamo is one edit, not a
whole letter; words are compared as short strings in which every word of the prompt's accepted
translations is one code point. Word alignment counts (extra, missing, in common) come from the
longest common subsequence, ``(len(a) + len(b) - indel) / 2``, without per-answer alignment.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Indel, Levenshtein

from reports_ml.ngram_keys import (
    bigram_hits,
    bigram_keys,
    in_sorted,
    merged_keys,
    trigram_keys,
)
from reports_ml.ngram_keys import code as word_code
from reports_ml.ngram_keys import codes as word_codes
from reports_ml.text import normalize_answers, strip_accents_all, tokenize

__all__ = [
    "DENSE_FEATURES",
    "CourseVocabulary",
    "PromptIndex",
    "ngram_names",
    "similarity_features",
    "word_bigrams",
]

DENSE_FEATURES = (
    "log_times_reported",
    "same_up_to_punctuation_case",
    "same_up_to_spacing",
    "same_up_to_accents",
    "same_words_reordered",
    "same_words_orders_accepted",
    "accepted_order_freedom",
    "char_distance",
    "char_distance_ratio",
    "char_similarity",
    "char_similarity_mean",
    "char_similarity_gap",
    "accentless_char_distance",
    "sorted_words_similarity",
    "word_distance",
    "word_distance_ratio",
    "words_extra",
    "words_missing",
    "word_overlap_ratio",
    "words_in_prompt_ratio",
    "new_words_in_course",
    "new_words_in_source",
    "new_words_unknown",
    "new_words_near_known",
    "required_words_missing",
    "bigrams_in_prompt_ratio",
    "bigrams_unseen_in_prompt",
    "bigrams_in_course_ratio",
    "bigrams_unseen_in_course",
    "char_trigrams_in_prompt_ratio",
    "char_trigrams_in_course_ratio",
    "char_trigrams_unseen_in_course",
    "length_ratio_words",
    "length_ratio_chars",
    "answer_chars",
    "answer_words",
    "accepted_count",
    "accepted_neighbour_similarity",
    "accepted_neighbour_word_distance",
    "accepted_unique_word_share",
    "char_similarity_vs_neighbours",
    "word_distance_vs_neighbours",
    "new_word_share_vs_neighbours",
    "repeated_word",
)

_NEAR_KNOWN = 0.34  # normalized edit distance of a typo to the word meant (about 1 in 3)
_MAX_CDIST_CELLS = 1_000_000  # bounds the distance matrices of one prompt's answers


def _decomposed(texts: Sequence[str]) -> list[str]:
    return unicodedata.normalize("NFD", "\n".join(texts)).split("\n")


def word_bigrams(tokens: Sequence[str]) -> list[str]:
    """Pairs of neighbouring words, with sentence start and end: ``<s> a``, ``a b``, ``b </s>``."""
    framed = ["<s>", *tokens]
    framed_end = [*tokens, "</s>"]
    return list(map(" ".join, zip(framed, framed_end, strict=True)))


def ngram_names(tokens: Sequence[str], bigrams: Sequence[str]) -> list[str]:
    """Hashed-feature names of the answer's words and word bigrams."""
    names = ["w=" + w for w in tokens]
    names.extend(["b=" + g for g in bigrams])
    return names


class PromptIndex:
    """Everything about one prompt's accepted list that features look up, built once."""

    def __init__(self, accepted: tuple[str, ...], prompt: str) -> None:
        self.accepted = accepted
        self.forms = list(dict.fromkeys(f for f in normalize_answers(accepted) if f))
        self.form_set = frozenset(self.forms)
        self.decomposed = _decomposed(self.forms) if self.forms else []
        self.tokens = list(map(tokenize, self.forms))
        self.vocabulary = list(dict.fromkeys(chain.from_iterable(self.tokens)))
        self.code_of = dict(
            zip(self.vocabulary, map(word_code, range(len(self.vocabulary))), strict=True)
        )
        code = self.code_of.__getitem__
        self.coded = ["".join(map(code, tokens)) for tokens in self.tokens]
        self.sorted_words = [" ".join(sorted(tokens)) for tokens in self.tokens]
        self.sorted_count = Counter(self.sorted_words)
        self.sorted_set = frozenset(self.sorted_words)
        # How freely the prompt's translations order their words: the share of accepted
        # translations that another accepted one reorders (high for Hungarian, low for
        # Vietnamese), so that a reordered answer can be judged across languages.
        self.order_freedom = (
            sum(n for n in self.sorted_count.values() if n > 1) / len(self.forms)
            if self.forms
            else 0.0
        )
        self.form_lengths = np.array(list(map(len, self.decomposed)), dtype=float)
        self.token_counts = np.array(list(map(len, self.tokens)), dtype=float)
        self.id_of = {word: i for i, word in enumerate(self.vocabulary)}
        self.bigram_keys = (
            np.unique(
                np.concatenate(
                    [bigram_keys([self.id_of[w] for w in tokens]) for tokens in self.tokens]
                )
            )
            if self.tokens
            else np.zeros(0, dtype=np.int64)
        )
        in_forms = Counter(chain.from_iterable(map(set, self.tokens)))
        self.required = np.array(
            [in_forms[w] == len(self.forms) for w in self.vocabulary],
            dtype=bool,
        )
        self.no_space = frozenset(form.replace(" ", "") for form in self.forms)
        self.stripped = strip_accents_all(self.forms) if self.forms else []
        self.no_accent = frozenset(self.stripped)
        self.neighbours = _neighbour_stats(self)
        self.trigram_keys = np.unique(trigram_keys(self.decomposed)[0])
        self.source_words = frozenset(tokenize(normalize_answers([prompt])[0]))

    def encode(self, tokens: Sequence[str]) -> tuple[str, int]:
        """Words as code points (words off the accepted lists get fresh codes per answer) and
        how many words were on them."""
        codes = list(map(self.code_of.get, tokens))
        if None not in codes:
            return "".join(codes), len(codes)  # type: ignore[arg-type]  # no None
        unknown: dict[str, str] = {}
        first_free = len(self.vocabulary)
        known = len(codes)
        for i, (word, code) in enumerate(zip(tokens, codes, strict=True)):
            if code is None:
                known -= 1
                codes[i] = unknown.setdefault(word, word_code(first_free + len(unknown)))
        return "".join(codes), known  # type: ignore[arg-type]  # no None left


# Leave-one-out statistics use at most this many accepted translations (the most frequent).
_MAX_NEIGHBOUR_FORMS = 60


def _neighbour_stats(index: PromptIndex) -> tuple[float, float, float]:
    """How close the prompt's accepted translations are to each other: the mean, over them, of
    the highest character similarity to another one, of the lowest word distance ratio to
    another one, and of the share of its words found in no other one (NaN with fewer than
    two). A correct answer missing from the list is one more translation like these, so an
    answer is judged against how far apart this prompt's translations lie."""
    forms = index.decomposed[:_MAX_NEIGHBOUR_FORMS]
    if len(forms) < 2:
        return math.nan, math.nan, math.nan
    chars = process.cdist(forms, forms, scorer=Indel.normalized_similarity, dtype=np.float32)
    np.fill_diagonal(chars, -1.0)
    coded = index.coded[: len(forms)]
    words = process.cdist(coded, coded, scorer=Levenshtein.normalized_distance, dtype=np.float32)
    np.fill_diagonal(words, 2.0)
    tokens = index.tokens[: len(forms)]
    in_forms = Counter(chain.from_iterable(map(set, tokens)))
    unique = [sum(in_forms[w] == 1 for w in t) / max(len(t), 1) for t in tokens]
    return (
        float(chars.max(axis=1).mean()),
        float(words.min(axis=1).mean()),
        float(np.mean(unique)),
    )


@dataclass
class CourseVocabulary:
    """Words and word bigrams of every accepted translation seen for a course: an answer
    whose neighbouring words never stand together in the course is unlikely to be right, in
    any language."""

    id_of: dict[str, int] = field(default_factory=dict)
    # Sorted, unique keys (see ``bigram_keys`` and ``trigram_keys``); a new prompt's keys
    # are merged in, so a new prompt costs a copy of the arrays, never a sort.
    bigrams: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    trigrams: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def words(self) -> dict[str, int]:
        return self.id_of

    def add(self, index: PromptIndex) -> None:
        id_of = self.id_of
        for word in index.vocabulary:
            id_of.setdefault(word, len(id_of))
        if index.tokens:
            keys = np.unique(
                np.concatenate(
                    [bigram_keys([id_of[w] for w in tokens]) for tokens in index.tokens],
                )
            )
            self.bigrams = merged_keys(self.bigrams, keys)
        self.trigrams = merged_keys(self.trigrams, index.trigram_keys)

    def sorted_trigrams(self) -> np.ndarray:
        return self.trigrams

    def sorted_bigrams(self) -> np.ndarray:
        return self.bigrams


def _best(
    queries: list[str],
    choices: list[str],
    scorer: Callable[..., float],
    *,
    highest: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the position of its best choice and the score there (chunked cdist)."""
    positions = np.empty(len(queries), dtype=np.int64)
    values = np.empty(len(queries), dtype=float)
    step = max(1, _MAX_CDIST_CELLS // max(len(choices), 1))
    for start in range(0, len(queries), step):
        matrix = process.cdist(queries[start : start + step], choices, scorer=scorer)
        best = matrix.argmax(axis=1) if highest else matrix.argmin(axis=1)
        positions[start : start + step] = best
        values[start : start + step] = matrix[np.arange(len(best)), best]
    return positions, values


def _similarity_stats(queries: list[str], choices: list[str]) -> tuple[np.ndarray, ...]:
    """Per query: the highest and the mean normalized Indel similarity, and the gap between
    the highest and the second highest."""
    top = np.empty(len(queries))
    mean = np.empty(len(queries))
    gap = np.empty(len(queries))
    step = max(1, _MAX_CDIST_CELLS // max(len(choices), 1))
    for start in range(0, len(queries), step):
        matrix = process.cdist(
            queries[start : start + step],
            choices,
            scorer=Indel.normalized_similarity,
            dtype=np.float32,
        )
        stop = start + len(matrix)
        if matrix.shape[1] > 1:
            two = -np.partition(-matrix, 1, axis=1)[:, :2]
            top[start:stop], gap[start:stop] = two[:, 0], two[:, 0] - two[:, 1]
        else:
            top[start:stop], gap[start:stop] = matrix[:, 0], matrix[:, 0]
        mean[start:stop] = matrix.mean(axis=1)
    return top, mean, gap


def similarity_features(
    course_name: str,
    forms: list[str],
    tokens: list[list[str]],
    times_reported: np.ndarray,
    index: PromptIndex,
    course: CourseVocabulary,
    *,
    with_names: bool = True,
) -> tuple[list[list[str]], np.ndarray]:
    """Hashed-feature names (empty lists unless ``with_names``) and the dense block
    (``DENSE_FEATURES``) of one prompt's reports, given their normalized answers ``forms`` and
    their ``tokens``."""
    n = len(forms)
    decomposed = _decomposed(forms)
    stripped = strip_accents_all(forms)
    sorted_words = [" ".join(sorted(words)) for words in tokens]
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=n)
    flat = list(chain.from_iterable(tokens))
    report_of = np.repeat(np.arange(n), lengths)
    ids = np.fromiter(map(index.id_of.get, flat, repeat(-1)), dtype=np.int64, count=len(flat))
    # Words off the accepted lists get ids after the prompt's vocabulary (one per word).
    off_list = np.flatnonzero(ids < 0)
    new_words = list(dict.fromkeys(flat[i] for i in off_list.tolist()))
    vocabulary_size = len(index.vocabulary)
    new_id = {word: vocabulary_size + i for i, word in enumerate(new_words)}
    ids[off_list] = [new_id[flat[i]] for i in off_list.tolist()]
    course_ids = np.fromiter(
        map(course.id_of.get, flat, repeat(-1)), dtype=np.int64, count=len(flat)
    )
    in_course = np.fromiter(
        map(course.id_of.__contains__, new_words), dtype=bool, count=len(new_words)
    )
    in_source = np.fromiter(
        map(index.source_words.__contains__, new_words), dtype=bool, count=len(new_words)
    )
    unknown = ~(in_course | in_source)
    near = _near_known(new_words, unknown, index)
    new_of_token = ids[off_list] - vocabulary_size

    def per_report(positions: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(report_of[positions], weights=weights, minlength=n).astype(float)

    ending = np.cumsum(lengths)
    coded_all = word_codes(ids)
    coded = [
        coded_all[a - length : a]
        for a, length in zip(ending.tolist(), lengths.tolist(), strict=True)
    ]
    counts = {
        "known": lengths - per_report(off_list),
        "in_course": per_report(off_list, in_course[new_of_token].astype(float)),
        "in_source": per_report(off_list, in_source[new_of_token].astype(float)),
        "unknown": per_report(off_list, unknown[new_of_token].astype(float)),
        "near_known": per_report(off_list, near[new_of_token].astype(float)),
        "same": np.fromiter(map(index.form_set.__contains__, forms), dtype=float, count=n),
        "spacing": np.fromiter(
            (form.replace(" ", "") in index.no_space for form in forms),
            dtype=float,
            count=n,
        ),
        "accents": np.fromiter(map(index.no_accent.__contains__, stripped), dtype=float, count=n),
        "reordered": np.fromiter(
            map(index.sorted_set.__contains__, sorted_words), dtype=float, count=n
        ),
        "orders_accepted": np.fromiter(
            (index.sorted_count.get(words, 0) for words in sorted_words),
            dtype=float,
            count=n,
        ),
        **_sequence_counts(ids, report_of, lengths, index, course_ids, course),
    }
    trigrams, owner = trigram_keys(decomposed)
    counts["trigrams"] = np.bincount(owner, minlength=n).astype(float)
    counts["trigrams_in_prompt"] = np.bincount(
        owner,
        weights=in_sorted(trigrams, index.trigram_keys),
        minlength=n,
    )
    counts["trigrams_in_course"] = np.bincount(
        owner,
        weights=in_sorted(trigrams, course.sorted_trigrams()),
        minlength=n,
    )
    names: list[list[str]] = [[] for _ in range(n)]
    if with_names:
        badge = "c=" + course_name
        for k, words in enumerate(tokens):
            names[k] = ngram_names(words, word_bigrams(words))
            names[k].append(badge)
            names[k].extend("+=" + word for word in words if word not in index.id_of)
    n_words = lengths.astype(float)
    n_chars = np.fromiter(map(len, decomposed), dtype=float, count=n)
    dense = _dense_block(
        index,
        times_reported,
        decomposed,
        coded,
        stripped,
        sorted_words,
        n_words,
        n_chars,
        counts,
    )
    return names, dense


def _sequence_counts(
    ids: np.ndarray,
    report_of: np.ndarray,
    lengths: np.ndarray,
    index: PromptIndex,
    course_ids: np.ndarray,
    course: CourseVocabulary,
) -> dict[str, np.ndarray]:
    """Per report: word bigrams found in the prompt's and in the course's accepted
    translations, required words missing, whether a word follows itself."""
    n = len(lengths)
    hits = bigram_hits(ids, report_of, lengths, index.bigram_keys)
    course_hits = bigram_hits(course_ids, report_of, lengths, course.sorted_bigrams())
    repeated = np.zeros(n)
    if len(ids) > 1:
        same = (ids[1:] == ids[:-1]) & (report_of[1:] == report_of[:-1])
        repeated = (np.bincount(report_of[1:], weights=same, minlength=n) > 0).astype(float)
    vocabulary_size = len(index.vocabulary)
    required = np.flatnonzero(ids < vocabulary_size)
    required = required[index.required[ids[required]]]
    present = np.unique(report_of[required] * max(vocabulary_size, 1) + ids[required])
    found = np.bincount(present // max(vocabulary_size, 1), minlength=n)
    return {
        "bigrams_in_prompt": hits,
        "bigrams_in_course": course_hits,
        "required_missing": (int(index.required.sum()) - found).astype(float),
        "repeated": repeated,
    }


def _near_known(words: list[str], unknown: np.ndarray, index: PromptIndex) -> np.ndarray:
    """Which of ``words`` (those flagged ``unknown``) are within a typo of a prompt's word."""
    near = np.zeros(len(words), dtype=bool)
    positions = np.flatnonzero(unknown)
    if not len(positions) or not index.vocabulary:
        return near
    distances = process.cdist(
        [words[i] for i in positions.tolist()],
        index.vocabulary,
        scorer=Levenshtein.normalized_distance,
        score_cutoff=_NEAR_KNOWN,
        dtype=np.float32,
    )
    near[positions] = distances.min(axis=1) <= _NEAR_KNOWN
    return near


def _dense_block(
    index: PromptIndex,
    times_reported: np.ndarray,
    decomposed: list[str],
    coded: list[str],
    stripped: list[str],
    sorted_words: list[str],
    n_words: np.ndarray,
    n_chars: np.ndarray,
    count: dict[str, np.ndarray],
) -> np.ndarray:
    n = len(coded)
    log = np.log1p
    if index.forms:
        near_char, char_distance = _best(
            decomposed, index.decomposed, Levenshtein.distance, highest=False
        )
        char_similarity, char_mean, char_gap = _similarity_stats(decomposed, index.decomposed)
        _, accentless = _best(stripped, index.stripped, Levenshtein.distance, highest=False)
        _, sorted_similarity = _best(
            sorted_words, index.sorted_words, Indel.normalized_similarity, highest=True
        )
        near_word, word_distance = _best(coded, index.coded, Levenshtein.distance, highest=False)
        near_lcs, indel = _best(coded, index.coded, Indel.distance, highest=False)
        near_words = index.token_counts[near_word]
        near_length = index.form_lengths[near_char]
        lcs_words = index.token_counts[near_lcs]
        common = (n_words + lcs_words - indel) / 2
        extra, missing = n_words - common, lcs_words - common
    else:
        char_distance, accentless = n_chars, n_chars
        char_similarity = char_mean = char_gap = sorted_similarity = np.zeros(n)
        word_distance = n_words
        near_words = near_length = lcs_words = common = missing = np.zeros(n)
        extra = n_words
    n_bigrams = n_words + 1
    neighbour_chars, neighbour_words, neighbour_unique = index.neighbours
    word_ratio = word_distance / np.maximum(np.maximum(n_words, near_words), 1)
    words_known = count["known"] / np.maximum(n_words, 1)
    columns = {
        "log_times_reported": log(times_reported),
        "same_up_to_punctuation_case": count["same"],
        "same_up_to_spacing": count["spacing"],
        "same_up_to_accents": count["accents"],
        "same_words_reordered": count["reordered"],
        "same_words_orders_accepted": log(count["orders_accepted"]),
        "accepted_order_freedom": np.full(n, index.order_freedom),
        "char_distance": log(char_distance),
        "char_distance_ratio": char_distance / np.maximum(np.maximum(n_chars, near_length), 1),
        "char_similarity": char_similarity,
        "char_similarity_mean": char_mean,
        "char_similarity_gap": char_gap,
        "accentless_char_distance": log(accentless),
        "sorted_words_similarity": sorted_similarity,
        "word_distance": log(word_distance),
        "word_distance_ratio": word_ratio,
        "words_extra": log(extra),
        "words_missing": log(missing),
        "word_overlap_ratio": common / np.maximum(np.maximum(n_words, lcs_words), 1),
        "words_in_prompt_ratio": words_known,
        "new_words_in_course": log(count["in_course"]),
        "new_words_in_source": log(count["in_source"]),
        "new_words_unknown": log(count["unknown"]),
        "new_words_near_known": log(count["near_known"]),
        "required_words_missing": log(count["required_missing"]),
        "bigrams_in_prompt_ratio": count["bigrams_in_prompt"] / n_bigrams,
        "bigrams_unseen_in_prompt": log(n_bigrams - count["bigrams_in_prompt"]),
        "bigrams_in_course_ratio": count["bigrams_in_course"] / n_bigrams,
        "bigrams_unseen_in_course": log(n_bigrams - count["bigrams_in_course"]),
        "char_trigrams_in_prompt_ratio": count["trigrams_in_prompt"]
        / np.maximum(count["trigrams"], 1),
        "char_trigrams_in_course_ratio": count["trigrams_in_course"]
        / np.maximum(count["trigrams"], 1),
        "char_trigrams_unseen_in_course": log(count["trigrams"] - count["trigrams_in_course"]),
        "length_ratio_words": n_words / np.maximum(near_words, 1),
        "length_ratio_chars": n_chars / np.maximum(near_length, 1),
        "answer_chars": log(n_chars),
        "answer_words": log(n_words),
        "accepted_count": np.full(n, np.log1p(len(index.forms))),
        "accepted_neighbour_similarity": np.full(n, neighbour_chars),
        "accepted_neighbour_word_distance": np.full(n, neighbour_words),
        "accepted_unique_word_share": np.full(n, neighbour_unique),
        "char_similarity_vs_neighbours": char_similarity - neighbour_chars,
        "word_distance_vs_neighbours": word_ratio - neighbour_words,
        "new_word_share_vs_neighbours": 1 - words_known - neighbour_unique,
        "repeated_word": count["repeated"],
    }
    return np.column_stack([columns[name] for name in DENSE_FEATURES])
