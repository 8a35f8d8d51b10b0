"""Language-independent features of a report, from its answer and the prompt's accepted list.

Two blocks, combined by ``ReportModel``:

* **hashed** (``FeatureHasher``, 2^hash_bits columns): the answer's word unigrams and bigrams
  (with sentence boundaries); with the ``full`` feature set also the word edits from the
  nearest accepted translation (words added, missing, substituted) and the course.
* **dense** (``DENSE_FEATURES``, full set only): edit features against the nearest accepted
  translation, found with rapidfuzz at character and at word level: distances, inserted /
  deleted / substituted counts, whether the answer differs from an accepted translation only
  in punctuation and case, spacing, accents or word order, where the new words come from
  (other accepted translations of the prompt, elsewhere in the course, the English prompt, or
  nowhere), length ratios, and ``times_reported``.

Words are compared at word level by giving every word of a prompt's accepted translations one
code point, so rapidfuzz compares word sequences as short strings. A ``FeatureExtractor``
caches one ``PromptIndex`` per prompt and a vocabulary per course; the course vocabularies
grow with every accepted list it sees and are kept when a model is saved.
"""

from __future__ import annotations

import math
import multiprocessing
import operator
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Literal, cast

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein, Prefix
from scipy import sparse
from sklearn.feature_extraction import FeatureHasher

from reports_ml.models import ReportLike
from reports_ml.text import (
    normalize_answer,
    normalize_answers,
    strip_accents,
    strip_accents_all,
    tokenize,
)

__all__ = [
    "DENSE_FEATURES",
    "FeatureExtractor",
    "FeatureSet",
    "Features",
    "PromptIndex",
    "featurize",
    "nearest_accepted",
]

FeatureSet = Literal["full", "ngram"]

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
_MAX_CDIST_CELLS = 2_000_000
# LRU bound: an index takes ~65 KiB for ~45 accepted translations, so at most ~650 MB.
_MAX_CACHED_PROMPTS = 10_000
_MIN_PARALLEL_REPORTS = 20_000


def _hasher(bits: int) -> FeatureHasher:
    return FeatureHasher(n_features=2**bits, input_type="string", alternate_sign=False)


def _code(index: int) -> str:
    point = 0x100 + index
    return chr(point if point < 0xD800 else point + 0x800)  # skip surrogates


def _bigrams(coded: str) -> list[str]:
    framed = _START + coded + _END
    return list(map(operator.add, framed, framed[1:]))


def _word_bigrams(tokens: Sequence[str]) -> list[str]:
    framed = ["<s>", *tokens]
    framed_end = [*tokens, "</s>"]
    return list(map(" ".join, zip(framed, framed_end, strict=True)))


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
class _CourseVocabulary:
    words: set[str] = field(default_factory=set)
    bigrams: set[str] = field(default_factory=set)

    def add(self, index: PromptIndex) -> None:
        self.words.update(index.vocabulary)
        for tokens in index.tokens:
            self.bigrams.update(_word_bigrams(tokens))


@dataclass(frozen=True)
class Features:
    """Features of a batch of reports: hashed (sparse) and dense (unscaled) blocks."""

    hashed: sparse.csr_matrix
    dense: np.ndarray
    dense_names: tuple[str, ...]


class FeatureExtractor:
    """Turns reports into ``Features``; ``feature_set="ngram"`` gives only answer n-grams.

    Not thread-safe for concurrent calls (it updates its caches); use one per worker.
    """

    def __init__(self, feature_set: FeatureSet = "full", *, hash_bits: int = 18) -> None:
        if feature_set not in ("full", "ngram"):
            raise ValueError(f"unknown feature set {feature_set!r}")
        self.feature_set: FeatureSet = feature_set
        self.hash_bits = hash_bits
        self.dense_names: tuple[str, ...] = DENSE_FEATURES if feature_set == "full" else ()
        self._hasher = _hasher(hash_bits)
        self._prompts: OrderedDict[tuple[str, str], PromptIndex] = OrderedDict()
        self._courses: dict[str, _CourseVocabulary] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Prompt indexes are rebuilt on demand and the hasher is stateless; course
        # vocabularies are kept.
        state = self.__dict__.copy()
        del state["_prompts"], state["_hasher"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._prompts = OrderedDict()
        self._hasher = _hasher(self.hash_bits)

    @property
    def courses(self) -> list[str]:
        return sorted(self._courses)

    def prompt_index(self, report: ReportLike) -> PromptIndex:
        """The (cached) index of the report's prompt and current accepted list."""
        key = (report.course, report.prompt_id)
        index = self._prompts.get(key)
        accepted = report.accepted
        if index is not None and (index.accepted is accepted or index.accepted == tuple(accepted)):
            self._prompts.move_to_end(key)
            return index
        index = PromptIndex(tuple(accepted), report.prompt)
        self._courses.setdefault(report.course, _CourseVocabulary()).add(index)
        self._prompts[key] = index
        self._prompts.move_to_end(key)
        if len(self._prompts) > _MAX_CACHED_PROMPTS:
            self._prompts.popitem(last=False)  # the least recently used
        return index

    def observe(self, reports: Sequence[ReportLike]) -> None:
        """Index the prompts and accepted lists of ``reports`` (adds to course vocabularies)."""
        for members in _groups_by_prompt(reports):
            self.prompt_index(reports[members[0]])

    def transform(
        self, reports: Sequence[ReportLike], *, n_jobs: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> Features:
        """Features of ``reports`` in their order.

        Accepted lists are absorbed first, so the course vocabularies include every prompt of
        the batch. With ``n_jobs > 1`` large batches are split by prompt over forked worker
        processes (where the platform forks; otherwise one process does all).
        """
        groups = _groups_by_prompt(reports)
        if self.feature_set == "full":
            for members in groups:
                self.prompt_index(reports[members[0]])
        parallel = n_jobs > 1 and "fork" in multiprocessing.get_all_start_methods()
        if parallel and len(reports) >= _MIN_PARALLEL_REPORTS:
            return self._transform_parallel(reports, groups, n_jobs, progress)
        hashed: list[list[str]] = [[] for _ in reports]
        dense = np.zeros((len(reports), len(self.dense_names)))
        for members in groups:
            group = [reports[i] for i in members]
            names, block = self._transform_group(group)
            for row, row_names in zip(members, names, strict=True):
                hashed[row] = row_names
            dense[members] = block
            if progress is not None:
                progress(len(members))
        matrix = self._hasher.transform(hashed).tocsr()
        return Features(hashed=matrix, dense=dense, dense_names=self.dense_names)

    def _transform_parallel(
        self, reports: Sequence[ReportLike], groups: list[list[int]], n_jobs: int,
        progress: Callable[[int], None] | None,
    ) -> Features:
        # Forked workers inherit the reports and the warm prompt indexes; only the chunks'
        # positions go out and their features come back.
        global _FORKED
        chunks = _balanced_chunks(groups, 4 * n_jobs)
        parts: list[Features] = []
        _FORKED = (self, reports)
        try:
            with multiprocessing.get_context("fork").Pool(n_jobs) as pool:
                for part, chunk in zip(
                    pool.imap(_transform_forked, chunks), chunks, strict=True,
                ):
                    parts.append(part)
                    if progress is not None:
                        progress(len(chunk))
        finally:
            _FORKED = None
        order = np.argsort(np.concatenate([np.asarray(chunk) for chunk in chunks]), kind="stable")
        hashed = sparse.vstack([part.hashed for part in parts], format="csr")[order]
        dense = np.concatenate([part.dense for part in parts])[order]
        return Features(hashed=hashed, dense=dense, dense_names=self.dense_names)

    def _transform_group(self, reports: list[ReportLike]) -> tuple[list[list[str]], np.ndarray]:
        """Hashed-feature names and the dense block of one prompt's reports."""
        forms = [normalize_answer(report.answer) for report in reports]
        tokens = [tokenize(form) for form in forms]
        if self.feature_set == "ngram":
            return [_ngram_names(words, _word_bigrams(words)) for words in tokens], np.zeros(
                (len(reports), 0),
            )
        index = self.prompt_index(reports[0])
        course = self._courses[reports[0].course]
        coded = [index.encode(words) for words in tokens]
        nearest = _nearest_all(forms, coded, index)
        names: list[list[str]] = []
        counts: list[tuple[int, ...]] = []
        for k, report in enumerate(reports):
            row_names, row_counts = _edit_features(
                report.course, forms[k], tokens[k], coded[k], index, course,
                int(nearest[k, 0]), int(nearest[k, 2]),
            )
            names.append(row_names)
            counts.append(row_counts)
        return names, _dense_block(reports, forms, tokens, index, nearest, np.array(counts))


_FORKED: tuple[FeatureExtractor, Sequence[ReportLike]] | None = None


def _transform_forked(chunk: list[int]) -> Features:
    assert _FORKED is not None, "runs only in a worker forked by _transform_parallel"
    extractor, reports = _FORKED
    return extractor.transform([reports[i] for i in chunk])


def _balanced_chunks(groups: list[list[int]], n_chunks: int) -> list[list[int]]:
    """``groups`` (kept whole) dealt into up to ``n_chunks`` chunks of similar size."""
    chunks: list[list[int]] = [[] for _ in range(n_chunks)]
    for members in sorted(groups, key=len, reverse=True):
        min(chunks, key=len).extend(members)
    return [chunk for chunk in chunks if chunk]


def featurize(
    reports: Sequence[ReportLike], extractor: FeatureExtractor | None = None,
) -> Features:
    """Features of ``reports`` with ``extractor`` (a fresh full-feature one by default)."""
    return (extractor or FeatureExtractor()).transform(reports)


def nearest_accepted(answer: str, accepted: Sequence[str]) -> int | None:
    """Position in ``accepted`` of the translation nearest to ``answer`` in words (ties: the
    earlier one), or None for an empty list."""
    index = PromptIndex(tuple(accepted), "")
    if not index.forms:
        return None
    coded = index.encode(tokenize(normalize_answer(answer)))
    best = process.extractOne(coded, index.coded, scorer=Levenshtein.distance)
    form = index.forms[best[2]]
    return next(i for i, text in enumerate(accepted) if normalize_answer(text) == form)


def _groups_by_prompt(reports: Sequence[ReportLike]) -> list[list[int]]:
    """Positions of ``reports`` grouped by course, prompt and accepted list."""
    by_prompt: dict[tuple[str, str], list[tuple[Sequence[str], list[int]]]] = {}
    for i, report in enumerate(reports):
        variants = by_prompt.setdefault((report.course, report.prompt_id), [])
        for accepted, members in variants:
            if accepted is report.accepted or tuple(accepted) == tuple(report.accepted):
                members.append(i)
                break
        else:
            variants.append((report.accepted, [i]))
    return [members for variants in by_prompt.values() for _, members in variants]


def _ngram_names(tokens: Sequence[str], word_bigrams: Sequence[str]) -> list[str]:
    names = ["w=" + w for w in tokens]
    names.extend(["b=" + g for g in word_bigrams])
    return names


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
    course_name: str, form: str, tokens: list[str], coded: str, index: PromptIndex,
    course: _CourseVocabulary, char_index: int, word_index: int,
) -> tuple[list[str], tuple[int, ...]]:
    """Hashed-feature names and the counts of ``_COUNTS`` for one answer."""
    word_bigrams = _word_bigrams(tokens)
    names = _ngram_names(tokens, word_bigrams)
    names.append("c=" + course_name)
    same = form in index.form_set
    spacing = accents = reordered = False
    chars_extra = chars_missing = chars_substituted = 0
    new_words: list[str] = []
    missing: list[str] = []
    same_stem = substituted = 0
    if not same:
        spacing = form.replace(" ", "") in index.no_space
        accents = strip_accents(form) in index.no_accent
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
    in_prompt = in_course = in_source = unknown = near_known = 0
    for word in new_words:
        if word in index.code_of:
            in_prompt += 1
            continue
        known_in_course = word in course.words
        known_in_source = word in index.source_words
        in_course += known_in_course
        in_source += known_in_source
        if not (known_in_course or known_in_source):
            unknown += 1
            near_known += process.extractOne(
                word, index.vocabulary, scorer=Levenshtein.normalized_distance,
                score_cutoff=_NEAR_KNOWN,
            ) is not None
    optional = sum(map(index.optional.__contains__, missing))
    return names, (
        same, spacing, accents, reordered, chars_extra, chars_missing, chars_substituted,
        len(new_words) - substituted, len(missing), substituted, in_prompt, in_course,
        in_source, unknown, near_known, same_stem, optional, len(missing) - optional,
        sum(map(index.code_of.__contains__, tokens)),
        sum(map(course.words.__contains__, tokens)),
        sum(map(index.bigrams.__contains__, _bigrams(coded))),
        sum(map(course.bigrams.__contains__, word_bigrams)),
        any(map(operator.eq, tokens, tokens[1:])),
    )


def _dense_block(
    reports: Sequence[ReportLike], forms: list[str], tokens: list[list[str]],
    index: PromptIndex, nearest: np.ndarray, counts: np.ndarray,
) -> np.ndarray:
    """The dense features (``DENSE_FEATURES`` order) of one prompt's reports."""
    count = dict(zip(_COUNTS, counts.reshape(len(reports), len(_COUNTS)).T.astype(float),
                     strict=True))
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
