"""Language-independent features of a report, from its answer and the prompt's accepted list.

Two blocks:

* **dense** (``DENSE_FEATURES``, full set only): how the answer compares with the prompt's
  accepted translations at character level (in canonical decomposition) and at word level,
  whether it differs from one only in punctuation and case, spacing, accents or word order,
  where its new words come from (elsewhere in the course, the English prompt, or nowhere),
  how far apart the accepted translations lie from each other, and ``times_reported``. They
  are computed for a whole prompt's reports at once in ``reports_ml.similarity``.
* **hashed** (``FeatureHasher``, 2^hash_bits columns): the answer's word unigrams and bigrams
  (with sentence boundaries); with the ``full`` set also its words off the accepted list and
  the course. The full set computes them only when ``hashed`` is set (the model stacks a
  regression over them); otherwise the block is empty.

A ``FeatureExtractor`` caches one ``PromptIndex`` per prompt (least recently used dropped
first) and a vocabulary per course; the course vocabularies grow with every accepted list it
sees and are kept when a model is saved. An accepted list the course vocabulary already holds
(by digest) is not indexed before a batch is split over worker processes: each worker indexes
its own prompts.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any, Literal

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein
from scipy import sparse
from sklearn.feature_extraction import FeatureHasher

from reports_ml.models import ReportLike
from reports_ml.prompt_index import CourseVocabulary, PromptIndex, accepted_digest
from reports_ml.similarity import (
    DENSE_FEATURES,
    ngram_names,
    similarity_features,
    word_bigrams,
)
from reports_ml.text import normalize_answer, normalize_answers, tokenize, tokenize_all

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

# LRU bound: an index takes ~65 KiB for ~45 accepted translations, so at most ~650 MB.
_MAX_CACHED_PROMPTS = 10_000
_MIN_PARALLEL_REPORTS = 20_000


def _hasher(bits: int) -> FeatureHasher:
    return FeatureHasher(n_features=2**bits, input_type="string", alternate_sign=False)


@functools.lru_cache(maxsize=4)
def _no_hashed(rows: int, bits: int) -> sparse.csr_matrix:
    """The all-zero hashed block (shared: nothing writes to it; building one per single
    report costs more than its features)."""
    return sparse.csr_matrix((rows, 2**bits))


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

    def __init__(
        self,
        feature_set: FeatureSet = "full",
        *,
        hash_bits: int = 18,
        hashed: bool = True,
    ) -> None:
        if feature_set not in ("full", "ngram"):
            raise ValueError(f"unknown feature set {feature_set!r}")
        self.feature_set: FeatureSet = feature_set
        self.hash_bits = hash_bits
        # Without hashed features (the full set, when no model reads them) the hashed block is
        # all zeros and costs nothing to compute.
        self.hashed = hashed or feature_set == "ngram"
        self.dense_names: tuple[str, ...] = DENSE_FEATURES if feature_set == "full" else ()
        self._hasher = _hasher(hash_bits)
        self._prompts: OrderedDict[tuple[str, str], PromptIndex] = OrderedDict()
        self._courses: dict[str, CourseVocabulary] = {}

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
        index = self._cached_index(report)
        if index is not None:
            return index
        index = PromptIndex(tuple(report.accepted), report.prompt)
        self._courses.setdefault(report.course, CourseVocabulary()).add(index)
        key = (report.course, report.prompt_id)
        self._prompts[key] = index
        self._prompts.move_to_end(key)
        if len(self._prompts) > _MAX_CACHED_PROMPTS:
            self._prompts.popitem(last=False)  # the least recently used
        return index

    def _cached_index(self, report: ReportLike) -> PromptIndex | None:
        key = (report.course, report.prompt_id)
        index = self._prompts.get(key)
        accepted = report.accepted
        if index is None or not (index.accepted is accepted or index.accepted == tuple(accepted)):
            return None
        self._prompts.move_to_end(key)
        return index

    def observe(self, reports: Sequence[ReportLike]) -> None:
        """Index the prompts and accepted lists of ``reports`` (adds to course vocabularies)."""
        for members in _groups_by_prompt(reports):
            self.prompt_index(reports[members[0]])

    def _absorb(self, reports: Sequence[ReportLike], groups: list[list[int]]) -> None:
        """Add the accepted lists of ``reports`` that their course vocabularies lack (the
        prompts of lists they hold are indexed later, where their features are computed)."""
        for members in groups:
            report = reports[members[0]]
            if self._cached_index(report) is not None:
                continue
            course = self._courses.get(report.course)
            if course is None or not course.holds(accepted_digest(report.accepted)):
                self.prompt_index(report)

    def transform(
        self,
        reports: Sequence[ReportLike],
        *,
        n_jobs: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> Features:
        """Features of ``reports`` in their order.

        Accepted lists are absorbed first, so the course vocabularies include every prompt of
        the batch. With ``n_jobs > 1`` large batches are split by prompt over forked worker
        processes (where the platform forks; otherwise one process does all).
        """
        groups = self._grouped(reports)
        parallel = n_jobs > 1 and "fork" in multiprocessing.get_all_start_methods()
        if parallel and len(reports) >= _MIN_PARALLEL_REPORTS:
            return self._transform_parallel(reports, groups, n_jobs, progress)
        return _in_input_order(self._transform_groups(reports, groups, progress), groups)

    def _grouped(self, reports: Sequence[ReportLike]) -> list[list[int]]:
        """Positions of ``reports`` by prompt, their accepted lists absorbed (full set)."""
        groups = _groups_by_prompt(reports)
        if self.feature_set == "full":
            self._absorb(reports, groups)
        return groups

    def _transform_groups(
        self,
        reports: Sequence[ReportLike],
        groups: list[list[int]],
        progress: Callable[[int], None] | None = None,
    ) -> Features:
        """Features of the reports at the positions in ``groups``, one group's rows after
        another's (in the order of ``chain(*groups)``)."""
        rows = sum(map(len, groups))
        hashed: list[list[str]] = []
        dense = np.empty((rows, len(self.dense_names)))
        start = 0
        for members in groups:
            names, block = self._transform_group([reports[i] for i in members])
            hashed.extend(names)
            dense[start : start + len(members)] = block
            start += len(members)
            if progress is not None:
                progress(len(members))
        if self.hashed:
            matrix = self._hasher.transform(hashed).tocsr()
        else:
            matrix = _no_hashed(rows, self.hash_bits)
        return Features(hashed=matrix, dense=dense, dense_names=self.dense_names)

    def transform_apply(
        self,
        reports: Sequence[ReportLike],
        apply: Callable[[Features], np.ndarray],
        *,
        n_jobs: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """``apply(transform(reports))`` for a function of the features that gives one value per
        report. With ``n_jobs > 1`` large batches are split by prompt over forked workers that
        apply it themselves, so only its values come back (not the feature blocks)."""
        parallel = n_jobs > 1 and "fork" in multiprocessing.get_all_start_methods()
        if not (parallel and len(reports) >= _MIN_PARALLEL_REPORTS):
            return apply(self.transform(reports, progress=progress))
        global _FORKED_APPLY
        chunks = _balanced_chunks(self._grouped(reports), 4 * n_jobs)
        parts: list[np.ndarray] = []
        _FORKED_APPLY = (self, reports, apply)
        try:
            with multiprocessing.get_context("fork").Pool(n_jobs) as pool:
                for part, chunk in zip(pool.imap(_apply_forked, chunks), chunks, strict=True):
                    parts.append(part)
                    if progress is not None:
                        progress(sum(map(len, chunk)))
        finally:
            _FORKED_APPLY = None
        return np.asarray(np.concatenate(parts)[_input_order(chunks)])

    def _transform_parallel(
        self,
        reports: Sequence[ReportLike],
        groups: list[list[int]],
        n_jobs: int,
        progress: Callable[[int], None] | None,
    ) -> Features:
        # Forked workers inherit the reports and the warm prompt indexes; only the chunks'
        # groups of positions go out and their features come back.
        global _FORKED
        chunks = _balanced_chunks(groups, 4 * n_jobs)
        parts: list[Features] = []
        _FORKED = (self, reports)
        try:
            with multiprocessing.get_context("fork").Pool(n_jobs) as pool:
                for part, chunk in zip(
                    pool.imap(_transform_forked, chunks),
                    chunks,
                    strict=True,
                ):
                    parts.append(part)
                    if progress is not None:
                        progress(sum(map(len, chunk)))
        finally:
            _FORKED = None
        order = _input_order(chunks)
        hashed = sparse.vstack([part.hashed for part in parts], format="csr")[order]
        dense = np.concatenate([part.dense for part in parts])[order]
        return Features(hashed=hashed, dense=dense, dense_names=self.dense_names)

    def _transform_group(self, reports: list[ReportLike]) -> tuple[list[list[str]], np.ndarray]:
        """Hashed-feature names and the dense block of one prompt's reports."""
        forms = normalize_answers([report.answer for report in reports])
        tokens = tokenize_all(forms)
        if self.feature_set == "ngram":
            names = [ngram_names(words, word_bigrams(words)) for words in tokens]
            return names, np.zeros((len(reports), 0))
        index = self.prompt_index(reports[0])
        times = np.fromiter(
            (report.times_reported for report in reports),
            dtype=float,
            count=len(reports),
        )
        return similarity_features(
            reports[0].course,
            forms,
            tokens,
            np.maximum(times, 1.0),
            index,
            self._courses[reports[0].course],
            with_names=self.hashed,
        )


_FORKED: tuple[FeatureExtractor, Sequence[ReportLike]] | None = None


def _transform_forked(chunk: list[list[int]]) -> Features:
    assert _FORKED is not None, "runs only in a worker forked by _transform_parallel"
    extractor, reports = _FORKED
    return extractor._transform_groups(reports, chunk)


_FORKED_APPLY: (
    tuple[FeatureExtractor, Sequence[ReportLike], Callable[[Features], np.ndarray]] | None
) = None


def _apply_forked(chunk: list[list[int]]) -> np.ndarray:
    assert _FORKED_APPLY is not None, "runs only in a worker forked by transform_apply"
    extractor, reports, apply = _FORKED_APPLY
    return apply(extractor._transform_groups(reports, chunk))


def _balanced_chunks(groups: list[list[int]], n_chunks: int) -> list[list[list[int]]]:
    """``groups`` dealt into up to ``n_chunks`` chunks of similar size (in reports)."""
    chunks: list[list[list[int]]] = [[] for _ in range(n_chunks)]
    sizes = [0] * n_chunks
    for members in sorted(groups, key=len, reverse=True):
        smallest = sizes.index(min(sizes))
        chunks[smallest].append(members)
        sizes[smallest] += len(members)
    return [chunk for chunk in chunks if chunk]


def _input_order(chunks: list[list[list[int]]]) -> np.ndarray:
    """Where each report's row stands among the chunks' rows laid one after another."""
    positions = np.fromiter(
        chain.from_iterable(chain.from_iterable(chunks)),
        dtype=np.int64,
        count=sum(len(members) for chunk in chunks for members in chunk),
    )
    return np.argsort(positions, kind="stable")


def _in_input_order(features: Features, groups: list[list[int]]) -> Features:
    """``features`` whose rows follow ``groups`` put back in the reports' order."""
    if len(groups) == 1:
        return features  # one prompt: members are in input order already
    order = _input_order([groups])
    return Features(
        hashed=features.hashed[order],
        dense=features.dense[order],
        dense_names=features.dense_names,
    )


def featurize(
    reports: Sequence[ReportLike],
    extractor: FeatureExtractor | None = None,
) -> Features:
    """Features of ``reports`` with ``extractor`` (a fresh full-feature one by default)."""
    return (extractor or FeatureExtractor()).transform(reports)


def nearest_accepted(answer: str, accepted: Sequence[str]) -> int | None:
    """Position in ``accepted`` of the translation nearest to ``answer`` in words (ties: the
    earlier one), or None for an empty list."""
    index = PromptIndex(tuple(accepted), "")
    if not index.forms:
        return None
    coded, _ = index.encode(tokenize(normalize_answer(answer)))
    best = process.extractOne(coded, index.details.coded, scorer=Levenshtein.distance)
    form = index.forms[best[2]]
    return next(i for i, text in enumerate(accepted) if normalize_answer(text) == form)


def _groups_by_prompt(reports: Sequence[ReportLike]) -> list[list[int]]:
    """Positions of ``reports`` grouped by course, prompt and accepted list."""
    by_prompt: dict[tuple[str, str], list[tuple[Sequence[str], list[int]]]] = {}
    for i, (course, prompt_id, accepted) in enumerate(map(_PROMPT_OF, reports)):
        variants = by_prompt.get((course, prompt_id))
        if variants is None:
            by_prompt[course, prompt_id] = [(accepted, [i])]
            continue
        for known, members in variants:
            if known is accepted or _same_list(known, accepted):
                members.append(i)
                break
        else:
            variants.append((accepted, [i]))
    return [members for variants in by_prompt.values() for _, members in variants]


def _same_list(one: Sequence[str], other: Sequence[str]) -> bool:
    """Whether two accepted lists hold the same texts (a list and a tuple may)."""
    if type(one) is type(other):
        return one == other
    return tuple(one) == tuple(other)


_PROMPT_OF = attrgetter("course", "prompt_id", "accepted")
