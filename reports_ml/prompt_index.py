"""What the features look up about a prompt's accepted list and about its course, built once.

``PromptIndex`` is built in two steps. Its core (the normalized accepted translations, their
words and character trigrams) is what a course's vocabulary absorbs, so it is built wherever
the vocabulary grows: in the process that owns the extractor, before batches are split over
workers. ``PromptIndex.details`` (word codes, sorted words, accent-free forms, words found
in every accepted translation, ...) is what only the features read; it is built on
first use, so that a forked worker builds the details of its own prompts.

``CourseVocabulary`` holds the words, word bigrams and character trigrams of every accepted
list a course has shown, and remembers which lists it has absorbed (by digest), so a list it
already holds, such as those of a loaded model's training data, costs nothing to show again.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain

import numpy as np

from reports_ml.cooccurrence import TranslationCounts
from reports_ml.ngram_keys import bigram_keys_of, character_keys, merged_keys, sorted_unique
from reports_ml.ngram_keys import codes as word_codes
from reports_ml.text import normalize_answers, strip_accents_decomposed, tokenize_all

__all__ = ["CourseVocabulary", "PromptDetails", "PromptIndex", "accepted_digest", "decomposed"]


def decomposed(texts: Sequence[str]) -> list[str]:
    """Canonical decomposition (NFD) of each text: an accent or a Hangul jamo is one character."""
    if not texts:
        return []
    return unicodedata.normalize("NFD", "\n".join(texts)).split("\n")


def accepted_digest(accepted: Sequence[str]) -> bytes:
    """Identifies an accepted list across processes (``hash`` of a string does not)."""
    return hashlib.blake2b(
        "\x1f".join(accepted).encode("utf-8", "surrogatepass"), digest_size=16
    ).digest()


class PromptIndex:
    """One prompt's accepted list: its forms, words and n-grams (see the module docstring)."""

    def __init__(self, accepted: tuple[str, ...], prompt: str) -> None:
        self.accepted = accepted
        self.prompt = prompt
        self.source_words = tokenize_all(normalize_answers([prompt]))[0]
        self.forms = _distinct_forms(normalize_answers(accepted))
        self.decomposed = decomposed(self.forms)
        self.tokens = tokenize_all(self.forms)
        flat = list(chain.from_iterable(self.tokens))
        self.vocabulary = list(dict.fromkeys(flat))
        self.id_of = dict(zip(self.vocabulary, range(len(self.vocabulary)), strict=True))
        # Word ids of every accepted translation, one after the other (``word_lengths`` each).
        self.word_ids = np.fromiter(map(self.id_of.__getitem__, flat), np.int64, len(flat))
        self.word_lengths = np.fromiter(map(len, self.tokens), np.int64, len(self.tokens))
        self.trigram_keys, self.quadgram_keys, self.boundary_keys = character_keys(self.decomposed)

    @cached_property
    def digest(self) -> bytes:
        return accepted_digest(self.accepted)

    @cached_property
    def details(self) -> PromptDetails:
        return PromptDetails(self)

    def encode(self, tokens: Sequence[str]) -> tuple[str, int]:
        """Words as code points (words off the accepted lists get fresh codes per answer) and
        how many words were on them."""
        ids = list(map(self.id_of.get, tokens))
        known = len(ids) - ids.count(None)
        unknown: dict[str, int] = {}
        for i, (word, id_) in enumerate(zip(tokens, ids, strict=True)):
            if id_ is None:
                ids[i] = unknown.setdefault(word, len(self.vocabulary) + len(unknown))
        return word_codes(np.array(ids, dtype=np.int64)), known


class PromptDetails:
    """The part of a ``PromptIndex`` that only the features read."""

    def __init__(self, index: PromptIndex) -> None:
        forms, tokens, lengths = index.forms, index.tokens, index.word_lengths
        self.form_set = frozenset(forms)
        every = word_codes(index.word_ids)
        ends = np.cumsum(lengths).tolist()
        self.coded = [every[end - n : end] for end, n in zip(ends, lengths.tolist(), strict=True)]
        self.sorted_words = [" ".join(sorted(words)) for words in tokens]
        self.sorted_count = Counter(self.sorted_words)
        self.sorted_set = frozenset(self.sorted_words)
        # How freely the prompt's translations order their words: the share of accepted
        # translations that another accepted one reorders (high for Hungarian, low for
        # Vietnamese), so that a reordered answer can be judged across languages.
        self.order_freedom = (
            sum(n for n in self.sorted_count.values() if n > 1) / len(forms) if forms else 0.0
        )
        self.form_lengths = np.fromiter(map(len, index.decomposed), float, len(forms))
        self.token_counts = lengths.astype(float)
        self.bigram_keys = bigram_keys_of(index.word_ids, lengths)
        form_of_word = np.repeat(np.arange(len(forms)), lengths)
        self.required = _forms_with_word(index, form_of_word) == len(forms)
        self.no_space = frozenset("\n".join(forms).replace(" ", "").split("\n") if forms else ())
        self.stripped = strip_accents_decomposed(index.decomposed)
        self.no_accent = frozenset(self.stripped)
        self.source_words = frozenset(index.source_words)


def _distinct_forms(forms: list[str]) -> list[str]:
    """The non-empty ``forms``, each once, in their order."""
    distinct = dict.fromkeys(forms)
    distinct.pop("", None)
    return list(distinct)


def _forms_with_word(index: PromptIndex, form_of_word: np.ndarray) -> np.ndarray:
    """Per word of the vocabulary: in how many accepted translations it stands."""
    vocabulary_size = max(len(index.vocabulary), 1)
    pairs = sorted_unique(form_of_word * vocabulary_size + index.word_ids)
    return np.bincount(pairs % vocabulary_size, minlength=len(index.vocabulary))


def _empty_keys() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class CourseVocabulary:
    """Words, word bigrams and character n-grams of every accepted translation seen for a
    course: an answer whose neighbouring words or letters never stand together in the course
    is unlikely to be right, in any language."""

    id_of: dict[str, int] = field(default_factory=dict)
    # Sorted, unique keys (see ``reports_ml.ngram_keys``); a new list's keys are merged in, so
    # a new prompt costs a copy of the arrays, never a sort.
    bigrams: np.ndarray = field(default_factory=_empty_keys)
    trigrams: np.ndarray = field(default_factory=_empty_keys)
    quadgrams: np.ndarray = field(default_factory=_empty_keys)
    boundaries: np.ndarray = field(default_factory=_empty_keys)
    absorbed: set[bytes] = field(default_factory=set)
    translations: TranslationCounts = field(default_factory=TranslationCounts)

    @property
    def words(self) -> dict[str, int]:
        return self.id_of

    def holds(self, digest: bytes) -> bool:
        """Whether the accepted list of this ``accepted_digest`` was absorbed."""
        return digest in self.absorbed

    def add(self, index: PromptIndex) -> None:
        """Absorb an accepted list (nothing to do for one absorbed before)."""
        if self.holds(index.digest):
            return
        id_of = self.id_of
        course_ids = np.fromiter(
            (id_of.setdefault(word, len(id_of)) for word in index.vocabulary),
            dtype=np.int64,
            count=len(index.vocabulary),
        )
        if index.tokens:
            keys = bigram_keys_of(course_ids[index.word_ids], index.word_lengths)
            self.bigrams = merged_keys(self.bigrams, keys)
        self.trigrams = merged_keys(self.trigrams, index.trigram_keys)
        self.quadgrams = merged_keys(self.quadgrams, index.quadgram_keys)
        self.boundaries = merged_keys(self.boundaries, index.boundary_keys)
        self.translations.add(index.source_words, course_ids)
        self.absorbed.add(index.digest)
