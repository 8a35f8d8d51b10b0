"""Edit features of answers against their prompt's accepted translations.

``PromptIndex`` holds what is looked up about one prompt's accepted list, built once;
``edit_features`` computes, for one prompt's reports at a time, the names of their hashed
features and the ``DENSE_FEATURES`` block. Nearest accepted translations are found with
rapidfuzz at character level and at word level: every word of the prompt's accepted
translations gets one code point, so word sequences compare as short strings.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import cast

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein, Prefix

from reports_ml.models import ReportLike
from reports_ml.text import normalize_answer, normalize_answers, strip_accents_all, tokenize

__all__ = [
    "DENSE_FEATURES",
    "CourseVocabulary",
    "PromptIndex",
    "edit_features",
    "ngram_names",
    "word_bigrams",
]

DENSE_FEATURES = (
    "log_times_reported",
    "same_up_to_punctuation_case",
    "same_up_to_spacing",
    "same_up_to_accents",
    "same_words_reordered",
    "char_distance",
    "char_distance_ratio",
    "chars_extra",
    "chars_missing",
    "chars_substituted",
    "word_distance",
    "word_distance_ratio",
    "words_extra",
    "words_missing",
    "words_substituted",
    "new_words_in_prompt",
    "new_words_in_course",
    "new_words_in_source",
    "new_words_unknown",
    "new_words_near_known",
    "substitutions_same_stem",
    "missing_words_optional",
    "missing_words_required",
    "words_in_prompt_ratio",
    "words_in_course_ratio",
    "bigrams_in_prompt_ratio",
    "bigrams_unseen_in_prompt",
    "bigrams_in_course_ratio",
    "length_ratio_words",
    "length_ratio_chars",
    "answer_words",
    "accepted_count",
    "repeated_word",
)

_START, _END = "\x01", "\x02"
_NEAR_KNOWN = 0.34  # normalized edit distance of a typo to the word meant (about 1 in 3)
_MAX_CDIST_CELLS = 2_000_000  # bounds the distance matrices of one prompt's answers


def _code(index: int) -> str:
    point = 0x100 + index
    return chr(point if point < 0xD800 else point + 0x800)  # skip surrogates


def _bigrams(coded: str) -> list[str]:
    framed = _START + coded + _END
    return list(map(operator.add, framed, framed[1:]))


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
        self.tokens = list(map(tokenize, self.forms))
        self.vocabulary = list(dict.fromkeys(chain.from_iterable(self.tokens)))
        self.code_of = dict(zip(self.vocabulary, map(_code, range(len(self.vocabulary))),
                                strict=True))
        code = self.code_of.__getitem__
        self.coded = ["".join(map(code, tokens)) for tokens in self.tokens]
        self.form_lengths = np.array(list(map(len, self.forms)), dtype=float)
        self.token_counts = np.array(list(map(len, self.tokens)), dtype=float)
        self.bigrams = frozenset(chain.from_iterable(map(_bigrams, self.coded)))
        in_forms = Counter(chain.from_iterable(map(set, self.tokens)))
        self.optional = frozenset(w for w, n in in_forms.items() if n < len(self.forms))
        self.no_space = frozenset(form.replace(" ", "") for form in self.forms)
        self.no_accent = frozenset(strip_accents_all(self.forms))
        self.sorted_words = frozenset(" ".join(sorted(tokens)) for tokens in self.tokens)
        self.source_words = frozenset(tokenize(normalize_answer(prompt)))

    def encode(self, tokens: Sequence[str]) -> str:
        """Words as code points; words off the accepted lists get fresh codes per answer."""
        codes = list(map(self.code_of.get, tokens))
        if None in codes:
            unknown: dict[str, str] = {}
            first_free = len(self.vocabulary)
            for i, (word, code) in enumerate(zip(tokens, codes, strict=True)):
                if code is None:
                    codes[i] = unknown.setdefault(word, _code(first_free + len(unknown)))
        return "".join(codes)  # type: ignore[arg-type]  # no None left


@dataclass
class CourseVocabulary:
    """Words and word bigrams of every accepted translation seen for a course."""

    words: set[str] = field(default_factory=set)
    bigrams: set[str] = field(default_factory=set)

    def add(self, index: PromptIndex) -> None:
        self.words.update(index.vocabulary)
        for tokens in index.tokens:
            self.bigrams.update(word_bigrams(tokens))


def edit_features(
    reports: Sequence[ReportLike], forms: list[str], tokens: list[list[str]],
    index: PromptIndex, course: CourseVocabulary,
) -> tuple[list[list[str]], np.ndarray]:
    """Hashed-feature names and the dense block of one prompt's reports (normalized answers
    ``forms``, their ``tokens``)."""
    coded = [index.encode(words) for words in tokens]
    nearest = _nearest_all(forms, coded, index)
    stripped = strip_accents_all(forms)
    names: list[list[str]] = []
    counts: list[tuple[int, ...]] = []
    unknown: list[list[str]] = []
    for k, (char_index, word_index) in enumerate(nearest[:, [0, 2]].tolist()):
        row_names, row_counts, row_unknown = _edit_features(
            reports[k].course, forms[k], tokens[k], coded[k], stripped[k], index, course,
            char_index, word_index,
        )
        names.append(row_names)
        counts.append(row_counts)
        unknown.append(row_unknown)
    count_array = np.array(counts, dtype=float).reshape(len(reports), len(_COUNTS))
    count_array[:, _COUNTS.index("near_known")] = _near_known_counts(unknown, index)
    return names, _dense_block(reports, forms, tokens, index, nearest, count_array)


def _nearest_all(forms: list[str], coded: list[str], index: PromptIndex) -> np.ndarray:
    """Per answer: nearest accepted form by characters, its distance, nearest by words, its
    distance (index -1 when the accepted list is empty)."""
    nearest = np.empty((len(forms), 4), dtype=np.int64)
    if not index.forms:
        nearest[:, 0] = nearest[:, 2] = -1
        nearest[:, 1] = [len(form) for form in forms]
        nearest[:, 3] = [len(code) for code in coded]
        return nearest
    step = max(1, _MAX_CDIST_CELLS // len(index.forms))
    for start in range(0, len(forms), step):
        stop = start + step
        for column, (queries, choices) in enumerate(
            ((forms[start:stop], index.forms), (coded[start:stop], index.coded)),
        ):
            distances = process.cdist(queries, choices, scorer=Levenshtein.distance)
            best = distances.argmin(axis=1)
            nearest[start:stop, 2 * column] = best
            nearest[start:stop, 2 * column + 1] = distances[np.arange(len(best)), best]
    return nearest


_COUNTS = (
    "same", "spacing", "accents", "reordered", "chars_extra", "chars_missing",
    "chars_substituted", "words_extra", "words_missing", "words_substituted", "in_prompt",
    "in_course", "in_source", "unknown", "near_known", "same_stem", "optional", "required",
    "words_in_prompt", "words_in_course", "bigrams_in_prompt", "bigrams_in_course", "repeated",
)


def _edit_features(
    course_name: str, form: str, tokens: list[str], coded: str, stripped: str,
    index: PromptIndex, course: CourseVocabulary, char_index: int, word_index: int,
) -> tuple[list[str], tuple[int, ...], list[str]]:
    """Hashed-feature names, the counts of ``_COUNTS`` (``near_known`` left 0) and the new
    words found nowhere, for one answer."""
    bigrams = word_bigrams(tokens)
    names = ngram_names(tokens, bigrams)
    names.append("c=" + course_name)
    same = form in index.form_set
    spacing = accents = reordered = False
    chars_extra = chars_missing = chars_substituted = 0
    new_words: list[str] = []
    missing: list[str] = []
    same_stem = substituted = 0
    if not same:
        spacing = form.replace(" ", "") in index.no_space
        accents = stripped in index.no_accent
        reordered = " ".join(sorted(tokens)) in index.sorted_words
        near_form = index.forms[char_index] if char_index >= 0 else ""
        for tag, _, _ in Levenshtein.editops(form, near_form).as_list():
            if tag == "delete":
                chars_extra += 1
            elif tag == "insert":
                chars_missing += 1
            else:
                chars_substituted += 1
        near_tokens = index.tokens[word_index] if word_index >= 0 else []
        near_coded = index.coded[word_index] if word_index >= 0 else ""
        word_edits = Levenshtein.editops(coded, near_coded).as_list()
        for tag, source, target in cast(list[tuple[str, int, int]], word_edits):
            if tag == "delete":
                new_words.append(tokens[source])
                names.append("+=" + tokens[source])
            elif tag == "insert":
                missing.append(near_tokens[target])
                names.append("-=" + near_tokens[target])
            else:
                old, new = near_tokens[target], tokens[source]
                substituted += 1
                new_words.append(new)
                names.append(f"~={old}>{new}")
                stem = Prefix.similarity(old, new)
                same_stem += stem >= 3 and 2 * stem >= min(len(old), len(new))
    in_prompt = in_course = in_source = 0
    unknown: list[str] = []
    for word in new_words:
        if word in index.code_of:
            in_prompt += 1
            continue
        known_in_course = word in course.words
        known_in_source = word in index.source_words
        in_course += known_in_course
        in_source += known_in_source
        if not (known_in_course or known_in_source):
            unknown.append(word)
    optional = sum(map(index.optional.__contains__, missing))
    return names, (
        same, spacing, accents, reordered, chars_extra, chars_missing, chars_substituted,
        len(new_words) - substituted, len(missing), substituted, in_prompt, in_course,
        in_source, len(unknown), 0, same_stem, optional, len(missing) - optional,
        sum(map(index.code_of.__contains__, tokens)),
        sum(map(course.words.__contains__, tokens)),
        sum(map(index.bigrams.__contains__, _bigrams(coded))),
        sum(map(course.bigrams.__contains__, bigrams)),
        any(map(operator.eq, tokens, tokens[1:])),
    ), unknown


def _near_known_counts(unknown: list[list[str]], index: PromptIndex) -> list[int]:
    """Per answer, how many of its unknown words are within a typo of a word of the prompt."""
    words = sorted(set(chain.from_iterable(unknown)))
    if not words or not index.vocabulary:
        return [0] * len(unknown)
    distances = process.cdist(
        words, index.vocabulary, scorer=Levenshtein.normalized_distance,
        score_cutoff=_NEAR_KNOWN, dtype=np.float32,
    )
    near = dict(zip(words, (distances.min(axis=1) <= _NEAR_KNOWN).tolist(), strict=True))
    return [sum(map(near.__getitem__, row)) for row in unknown]


def _dense_block(
    reports: Sequence[ReportLike], forms: list[str], tokens: list[list[str]],
    index: PromptIndex, nearest: np.ndarray, counts: np.ndarray,
) -> np.ndarray:
    """The dense features (``DENSE_FEATURES`` order) of one prompt's reports; ``counts`` holds
    one row of ``_COUNTS`` per report."""
    count = dict(zip(_COUNTS, counts.T, strict=True))
    log = np.log1p
    times = np.array([report.times_reported for report in reports], dtype=float)
    form_length = np.array([len(form) for form in forms], dtype=float)
    n_words = np.array([len(words) for words in tokens], dtype=float)
    if index.forms:
        near_length = index.form_lengths[nearest[:, 0]]
        near_words = index.token_counts[nearest[:, 2]]
    else:
        near_length = near_words = np.zeros(len(reports))
    char_distance, word_distance = nearest[:, 1].astype(float), nearest[:, 3].astype(float)
    n_bigrams = n_words + 1
    columns = {
        "log_times_reported": log(times),
        "same_up_to_punctuation_case": count["same"],
        "same_up_to_spacing": count["spacing"],
        "same_up_to_accents": count["accents"],
        "same_words_reordered": count["reordered"],
        "char_distance": log(char_distance),
        "char_distance_ratio": char_distance / np.maximum(np.maximum(form_length, near_length), 1),
        "word_distance": log(word_distance),
        "word_distance_ratio": word_distance / np.maximum(np.maximum(n_words, near_words), 1),
        "new_words_in_prompt": log(count["in_prompt"]),
        "new_words_in_course": log(count["in_course"]),
        "new_words_in_source": log(count["in_source"]),
        "new_words_unknown": log(count["unknown"]),
        "new_words_near_known": log(count["near_known"]),
        "substitutions_same_stem": log(count["same_stem"]),
        "missing_words_optional": log(count["optional"]),
        "missing_words_required": log(count["required"]),
        "words_in_prompt_ratio": count["words_in_prompt"] / np.maximum(n_words, 1),
        "words_in_course_ratio": count["words_in_course"] / np.maximum(n_words, 1),
        "bigrams_in_prompt_ratio": count["bigrams_in_prompt"] / n_bigrams,
        "bigrams_unseen_in_prompt": log(n_bigrams - count["bigrams_in_prompt"]),
        "bigrams_in_course_ratio": count["bigrams_in_course"] / n_bigrams,
        "length_ratio_words": n_words / np.maximum(near_words, 1),
        "length_ratio_chars": form_length / np.maximum(near_length, 1),
        "answer_words": log(n_words),
        "accepted_count": np.full(len(reports), math.log1p(len(index.forms))),
        "repeated_word": count["repeated"],
    }
    for name in ("chars_extra", "chars_missing", "chars_substituted", "words_extra",
                 "words_missing", "words_substituted"):
        columns[name] = log(count[name])
    return np.column_stack([columns[name] for name in DENSE_FEATURES])
