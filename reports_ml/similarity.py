"""Similarity features of answers against their prompt's accepted translations, by the batch.

Nothing here reads a language's words: every feature compares the answer with the prompt's own
accepted translations (and the course's other accepted translations), at character level and
at word level, so the features mean the same for Hungarian, Korean or Thai.

``similarity_features`` computes, for one prompt's reports at a time, the ``DENSE_FEATURES``
block and the names of the answers' hashed features, from the prompt's ``PromptIndex`` and
the course's ``CourseVocabulary`` (``reports_ml.prompt_index``). Distances come from
rapidfuzz's ``process.cdist`` (compiled, one call per prompt and measure): characters are
compared in canonical decomposition (NFD), so a missing accent or a wrong Hangul jamo is one
edit, not a whole letter; words are compared as short strings in which every word of the
prompt's accepted translations is one code point. Alignment counts (extra, missing, in common)
come from the longest common subsequence, ``(len(a) + len(b) - indel) / 2``, and the longest
common prefix and suffix, without per-answer alignment. How the answer's words relate to the
prompt's source words through the course's other prompts (a bilingual signal learned from the
accepted lists alone) comes from ``reports_ml.cooccurrence``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain, repeat

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Indel, Levenshtein, Postfix, Prefix

from reports_ml.cooccurrence import TRANSLATION_FEATURES, translation_columns
from reports_ml.ngram_keys import (
    bigram_hits,
    boundary_keys,
    in_sorted,
    in_sorted_beyond,
    quadgram_keys,
    runs,
    trigram_keys,
)
from reports_ml.ngram_keys import codes as word_codes
from reports_ml.prompt_index import CourseVocabulary, PromptIndex, decomposed
from reports_ml.text import strip_accents_all

__all__ = [
    "DENSE_FEATURES",
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
    "char_extra_ratio",
    "char_missing_ratio",
    "prefix_share",
    "suffix_share",
    "prefix_suffix_cover",
    "accentless_char_distance",
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
    "unseen_trigram_runs_prompt",
    "longest_unseen_trigram_run_prompt",
    "unseen_trigram_runs_course",
    "longest_unseen_trigram_run_course",
    "char_4grams_in_prompt_ratio",
    "char_4grams_in_course_ratio",
    "start_seen_in_prompt",
    "end_seen_in_prompt",
    "start_seen_in_course",
    "end_seen_in_course",
    "length_ratio_words",
    "length_ratio_chars",
    "answer_chars",
    "answer_words",
    "accepted_count",
    "repeated_word",
    *TRANSLATION_FEATURES,
)

_NEAR_KNOWN = 0.34  # normalized edit distance of a typo to the word meant (about 1 in 3)
_MAX_CDIST_CELLS = 1_000_000  # bounds the distance matrices of one prompt's answers


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


def _matrices(
    queries: list[str],
    choices: list[str],
    scorer: Callable[..., float],
    dtype: type[np.generic] | None = None,
) -> list[tuple[int, np.ndarray]]:
    """``cdist`` of ``queries`` against ``choices`` in chunks of rows (bounded memory): each
    chunk's first row and its matrix."""
    step = max(1, _MAX_CDIST_CELLS // max(len(choices), 1))
    return [
        (start, process.cdist(queries[start : start + step], choices, scorer=scorer, dtype=dtype))
        for start in range(0, len(queries), step)
    ]


def _best(
    queries: list[str],
    choices: list[str],
    scorer: Callable[..., float],
    *,
    highest: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the position of its best choice and the score there."""
    positions = np.empty(len(queries), dtype=np.int64)
    values = np.empty(len(queries), dtype=float)
    for start, matrix in _matrices(queries, choices, scorer):
        best = matrix.argmax(axis=1) if highest else matrix.argmin(axis=1)
        positions[start : start + len(best)] = best
        values[start : start + len(best)] = matrix[np.arange(len(best)), best]
    return positions, values


def _similarity_stats(queries: list[str], choices: list[str]) -> tuple[np.ndarray, ...]:
    """Per query: the position of the choice of highest normalized Indel similarity, that
    similarity, the mean over choices, and the gap between the highest and the second."""
    n = len(queries)
    best, top, mean, gap = np.empty(n, dtype=np.int64), np.empty(n), np.empty(n), np.empty(n)
    for start, matrix in _matrices(queries, choices, Indel.normalized_similarity, np.float32):
        stop = start + len(matrix)
        best[start:stop] = matrix.argmax(axis=1)
        top[start:stop] = matrix[np.arange(len(matrix)), best[start:stop]]
        if matrix.shape[1] > 1:
            second = np.partition(matrix, -2, axis=1)[:, -2]
            gap[start:stop] = top[start:stop] - second
        else:
            gap[start:stop] = top[start:stop]
        mean[start:stop] = matrix.mean(axis=1)
    return best, top, mean, gap


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
    details = index.details
    chars = decomposed(forms)
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=n)
    flat = list(chain.from_iterable(tokens))
    report_of = np.repeat(np.arange(n), lengths)
    ids = np.fromiter(map(index.id_of.get, flat, repeat(-1)), dtype=np.int64, count=len(flat))
    course_ids = np.fromiter(
        map(course.id_of.get, flat, repeat(-1)), dtype=np.int64, count=len(flat)
    )
    counts = {
        "same": np.fromiter(map(details.form_set.__contains__, forms), dtype=float, count=n),
        "spacing": np.fromiter(
            (form.replace(" ", "") in details.no_space for form in forms), dtype=float, count=n
        ),
        **_new_word_counts(flat, ids, report_of, n, index, course),
        **_sequence_counts(ids, course_ids, report_of, lengths, index, course),
        **_translation_counts(ids, course_ids, report_of, n, index, course),
        **_char_ngram_counts(chars, index, course),
    }
    names: list[list[str]] = [[] for _ in range(n)]
    if with_names:
        badge = "c=" + course_name
        for k, words in enumerate(tokens):
            names[k] = ngram_names(words, word_bigrams(words))
            names[k].append(badge)
            names[k].extend("+=" + word for word in words if word not in index.id_of)
    ending = np.cumsum(lengths).tolist()
    coded_all = word_codes(ids)
    coded = [coded_all[end - k : end] for end, k in zip(ending, lengths.tolist(), strict=True)]
    n_words = lengths.astype(float)
    n_chars = np.fromiter(map(len, chars), dtype=float, count=n)
    columns = _dense_columns(
        index, times_reported, forms, chars, tokens, coded, n_words, n_chars, counts
    )
    return names, np.column_stack([columns[name] for name in DENSE_FEATURES])


def _new_word_counts(
    flat: list[str],
    ids: np.ndarray,
    report_of: np.ndarray,
    n: int,
    index: PromptIndex,
    course: CourseVocabulary,
) -> dict[str, np.ndarray]:
    """Per report: its words on the prompt's accepted lists, and its other words found
    elsewhere in the course, in the English prompt, nowhere, or within a typo of a prompt's
    word. Words off the list get ids after the prompt's vocabulary, one per word (in ``ids``)."""
    off_list = np.flatnonzero(ids < 0)
    new_words = list(dict.fromkeys(flat[i] for i in off_list.tolist()))
    vocabulary_size = len(index.vocabulary)
    new_id = {word: vocabulary_size + i for i, word in enumerate(new_words)}
    ids[off_list] = [new_id[flat[i]] for i in off_list.tolist()]
    in_course = np.fromiter(
        map(course.id_of.__contains__, new_words), dtype=bool, count=len(new_words)
    )
    in_source = np.fromiter(
        map(index.details.source_words.__contains__, new_words), dtype=bool, count=len(new_words)
    )
    unknown = ~(in_course | in_source)
    near = _near_known(new_words, unknown, index)
    new_of_token = ids[off_list] - vocabulary_size
    owner = report_of[off_list]

    def per_report(flags: np.ndarray) -> np.ndarray:
        return np.bincount(owner, weights=flags[new_of_token], minlength=n)

    return {
        "known": np.bincount(report_of, minlength=n) - np.bincount(owner, minlength=n),
        "in_course": per_report(in_course),
        "in_source": per_report(in_source),
        "unknown": per_report(unknown),
        "near_known": per_report(near),
    }


def _sequence_counts(
    ids: np.ndarray,
    course_ids: np.ndarray,
    report_of: np.ndarray,
    lengths: np.ndarray,
    index: PromptIndex,
    course: CourseVocabulary,
) -> dict[str, np.ndarray]:
    """Per report: word bigrams found in the prompt's and in the course's accepted
    translations, required words missing, whether a word follows itself."""
    n = len(lengths)
    hits = bigram_hits(ids, report_of, lengths, index.details.bigram_keys)
    course_hits = bigram_hits(course_ids, report_of, lengths, course.bigrams)
    repeated = np.zeros(n)
    if len(ids) > 1:
        same = (ids[1:] == ids[:-1]) & (report_of[1:] == report_of[:-1])
        repeated = (np.bincount(report_of[1:], weights=same, minlength=n) > 0).astype(float)
    vocabulary_size = max(len(index.vocabulary), 1)
    required = np.flatnonzero(ids < len(index.vocabulary))
    required = required[index.details.required[ids[required]]]
    present = np.unique(report_of[required] * vocabulary_size + ids[required])
    found = np.bincount(present // vocabulary_size, minlength=n)
    return {
        "bigrams_in_prompt": hits,
        "bigrams_in_course": course_hits,
        "required_missing": (int(index.details.required.sum()) - found).astype(float),
        "repeated": repeated,
    }


def _translation_counts(
    ids: np.ndarray,
    course_ids: np.ndarray,
    report_of: np.ndarray,
    n: int,
    index: PromptIndex,
    course: CourseVocabulary,
) -> dict[str, np.ndarray]:
    """Per report: how its words relate to the prompt's source words through the course's
    other prompts (``reports_ml.cooccurrence``). ``ids`` of words off the accepted list are
    past the prompt's vocabulary."""
    translations = course.translations
    accepted = np.fromiter(
        map(course.id_of.get, index.vocabulary, repeat(-1)),
        dtype=np.int64,
        count=len(index.vocabulary),
    )
    return translation_columns(
        translations,
        translations.source_ids(index.source_words),
        accepted,
        course_ids,
        ids < len(index.vocabulary),
        report_of,
        n,
    )


def _char_ngram_counts(
    chars: list[str], index: PromptIndex, course: CourseVocabulary
) -> dict[str, np.ndarray]:
    """Per report: its character trigrams and 4-grams, how many stand in the prompt's and in
    the course's accepted translations, the runs of trigrams that do not (each run is one place
    where the answer departs from every accepted translation, whatever the script), and whether
    it begins and ends as an accepted translation does."""
    n = len(chars)
    trigrams, owner = trigram_keys(chars)
    in_prompt = in_sorted(trigrams, index.trigram_keys)
    in_course = in_sorted_beyond(trigrams, in_prompt, course.trigrams)
    prompt_runs, prompt_longest = runs(in_prompt == 0, owner, n)
    course_runs, course_longest = runs(in_course == 0, owner, n)
    quadgrams, quad_owner = quadgram_keys(chars)
    quad_in_prompt = in_sorted(quadgrams, index.quadgram_keys)
    bounds = boundary_keys(chars).ravel()
    bounds_in_prompt = in_sorted(bounds, index.boundary_keys)
    return {
        "trigrams": np.bincount(owner, minlength=n).astype(float),
        "trigrams_in_prompt": np.bincount(owner, weights=in_prompt, minlength=n),
        "trigrams_in_course": np.bincount(owner, weights=in_course, minlength=n),
        "prompt_runs": prompt_runs,
        "prompt_longest": prompt_longest,
        "course_runs": course_runs,
        "course_longest": course_longest,
        "quadgrams": np.bincount(quad_owner, minlength=n).astype(float),
        "quadgrams_in_prompt": np.bincount(quad_owner, weights=quad_in_prompt, minlength=n),
        "quadgrams_in_course": np.bincount(
            quad_owner,
            weights=in_sorted_beyond(quadgrams, quad_in_prompt, course.quadgrams),
            minlength=n,
        ),
        "bounds_in_prompt": bounds_in_prompt.reshape(n, 2),
        "bounds_in_course": in_sorted_beyond(bounds, bounds_in_prompt, course.boundaries).reshape(
            n, 2
        ),
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


def _distances(
    index: PromptIndex,
    forms: list[str],
    chars: list[str],
    tokens: list[list[str]],
    coded: list[str],
    n_words: np.ndarray,
    n_chars: np.ndarray,
) -> dict[str, np.ndarray]:
    """Distances of each answer to the prompt's accepted translations, at character and at
    word level (for an empty accepted list: as far as the answer is long)."""
    n = len(forms)
    details = index.details
    stripped = strip_accents_all(forms)
    sorted_words = [" ".join(sorted(words)) for words in tokens]
    out = {
        "accents": np.fromiter(map(details.no_accent.__contains__, stripped), float, n),
        "reordered": np.fromiter(map(details.sorted_set.__contains__, sorted_words), float, n),
        "orders_accepted": np.fromiter(
            (details.sorted_count.get(words, 0) for words in sorted_words), float, n
        ),
    }
    if not index.forms:
        zeros = np.zeros(n)
        return out | {
            "char": n_chars,
            "accentless": n_chars,
            "word": n_words,
            "extra": n_words,
            "char_extra": np.ones(n),
            **dict.fromkeys(
                ("near_length", "near_words", "lcs_words", "common", "missing", "char_missing"),
                zeros,
            ),
            **dict.fromkeys(("similarity", "mean", "gap", "prefix", "suffix"), zeros),
        }
    near_char, char = _best(chars, index.decomposed, Levenshtein.distance, highest=False)
    near_lcs_char, similarity, mean, gap = _similarity_stats(chars, index.decomposed)
    _, accentless = _best(stripped, details.stripped, Levenshtein.distance, highest=False)
    _, prefix = _best(chars, index.decomposed, Prefix.similarity, highest=True)
    _, suffix = _best(chars, index.decomposed, Postfix.similarity, highest=True)
    near_word, word = _best(coded, details.coded, Levenshtein.distance, highest=False)
    near_lcs, indel = _best(coded, details.coded, Indel.distance, highest=False)
    lcs_words = details.token_counts[near_lcs]
    common = (n_words + lcs_words - indel) / 2
    lcs_length = details.form_lengths[near_lcs_char]
    common_chars = np.round(similarity * (n_chars + lcs_length) / 2)
    return out | {
        "char": char,
        "accentless": accentless,
        "similarity": similarity,
        "mean": mean,
        "gap": gap,
        "prefix": prefix,
        "suffix": suffix,
        "word": word,
        "near_length": details.form_lengths[near_char],
        "near_words": details.token_counts[near_word],
        "lcs_words": lcs_words,
        "common": common,
        "extra": n_words - common,
        "missing": lcs_words - common,
        "char_extra": (n_chars - common_chars) / np.maximum(n_chars, 1),
        "char_missing": (lcs_length - common_chars) / np.maximum(lcs_length, 1),
    }


def _dense_columns(
    index: PromptIndex,
    times_reported: np.ndarray,
    forms: list[str],
    chars: list[str],
    tokens: list[list[str]],
    coded: list[str],
    n_words: np.ndarray,
    n_chars: np.ndarray,
    count: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    n = len(forms)
    log = np.log1p
    details = index.details
    d = _distances(index, forms, chars, tokens, coded, n_words, n_chars)
    n_bigrams = n_words + 1
    word_ratio = d["word"] / np.maximum(np.maximum(n_words, d["near_words"]), 1)
    words_known = count["known"] / np.maximum(n_words, 1)
    trigrams = np.maximum(count["trigrams"], 1)
    quadgrams = np.maximum(count["quadgrams"], 1)
    letters = np.maximum(n_chars, 1)
    return {
        "log_times_reported": log(times_reported),
        "same_up_to_punctuation_case": count["same"],
        "same_up_to_spacing": count["spacing"],
        "same_up_to_accents": d["accents"],
        "same_words_reordered": d["reordered"],
        "same_words_orders_accepted": log(d["orders_accepted"]),
        "accepted_order_freedom": np.full(n, details.order_freedom),
        "char_distance": log(d["char"]),
        "char_distance_ratio": d["char"] / np.maximum(np.maximum(n_chars, d["near_length"]), 1),
        "char_similarity": d["similarity"],
        "char_similarity_mean": d["mean"],
        "char_similarity_gap": d["gap"],
        "char_extra_ratio": d["char_extra"],
        "char_missing_ratio": d["char_missing"],
        "prefix_share": d["prefix"] / letters,
        "suffix_share": d["suffix"] / letters,
        "prefix_suffix_cover": np.minimum((d["prefix"] + d["suffix"]) / letters, 2.0),
        "accentless_char_distance": log(d["accentless"]),
        "word_distance": log(d["word"]),
        "word_distance_ratio": word_ratio,
        "words_extra": log(d["extra"]),
        "words_missing": log(d["missing"]),
        "word_overlap_ratio": d["common"] / np.maximum(np.maximum(n_words, d["lcs_words"]), 1),
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
        "char_trigrams_in_prompt_ratio": count["trigrams_in_prompt"] / trigrams,
        "char_trigrams_in_course_ratio": count["trigrams_in_course"] / trigrams,
        "char_trigrams_unseen_in_course": log(count["trigrams"] - count["trigrams_in_course"]),
        "unseen_trigram_runs_prompt": log(count["prompt_runs"]),
        "longest_unseen_trigram_run_prompt": count["prompt_longest"] / trigrams,
        "unseen_trigram_runs_course": log(count["course_runs"]),
        "longest_unseen_trigram_run_course": count["course_longest"] / trigrams,
        "char_4grams_in_prompt_ratio": count["quadgrams_in_prompt"] / quadgrams,
        "char_4grams_in_course_ratio": count["quadgrams_in_course"] / quadgrams,
        "start_seen_in_prompt": count["bounds_in_prompt"][:, 0],
        "end_seen_in_prompt": count["bounds_in_prompt"][:, 1],
        "start_seen_in_course": count["bounds_in_course"][:, 0],
        "end_seen_in_course": count["bounds_in_course"][:, 1],
        "length_ratio_words": n_words / np.maximum(d["near_words"], 1),
        "length_ratio_chars": n_chars / np.maximum(d["near_length"], 1),
        "answer_chars": log(n_chars),
        "answer_words": log(n_words),
        "accepted_count": np.full(n, np.log1p(len(index.forms))),
        "repeated_word": count["repeated"],
        **{name: count[name] for name in TRANSLATION_FEATURES},
    }
