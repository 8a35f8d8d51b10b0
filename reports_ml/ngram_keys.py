"""Integer keys of word bigrams and character trigrams, and the word codes of answers.

Word sequences are compared as strings with one code point per word (``codes``); n-gram
membership is tested on sorted NumPy arrays of int64 keys (``in_sorted``), so a whole prompt's
reports are looked up at once: a word bigram is two word ids (sentence start and end framed),
a character trigram three code points of 21 bits each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "bigram_hits",
    "bigram_keys",
    "code",
    "codes",
    "in_sorted",
    "merged_keys",
    "trigram_keys",
]

# Word ids in bigram keys: 0 and 1 frame the sentence, words count from 2.
_START_ID, _END_ID, _FIRST_ID = 0, 1, 2
_KEY_BASE = 1 << 31


def code(index: int) -> str:
    point = 0x100 + index
    return chr(point if point < 0xD800 else point + 0x800)  # skip surrogates


def codes(ids: np.ndarray) -> str:
    """``_code`` of every id, joined (done in NumPy: one code point per id)."""
    points = ids.astype(np.uint32) + 0x100
    points[points >= 0xD800] += 0x800
    return points.astype("<u4").tobytes().decode("utf-32-le")


def trigram_keys(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the character trigrams of ``texts`` (each framed by spaces) and the position
    of the text each trigram comes from."""
    if not texts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    joined = "\n".join(" " + text.replace("\n", " ") + " " for text in texts)
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    breaks = points == 0x0A
    owner = np.cumsum(breaks)[:-2]
    valid = ~(breaks[:-2] | breaks[1:-1] | breaks[2:])
    keys = (points[:-2] << 42) | (points[1:-1] << 21) | points[2:]
    return keys[valid], owner[valid]


def bigram_keys(ids: Sequence[int]) -> np.ndarray:
    """Keys of the word-id bigrams of one text, with sentence start and end."""
    framed = np.array([_START_ID, *[i + _FIRST_ID for i in ids], _END_ID], dtype=np.int64)
    return framed[:-1] * _KEY_BASE + framed[1:]


def merged_keys(keys: np.ndarray, more: np.ndarray) -> np.ndarray:
    """Sorted unique ``keys`` with the sorted unique ``more`` added."""
    new = more[in_sorted(more, keys) == 0]
    if not len(new):
        return keys
    return np.insert(keys, np.searchsorted(keys, new), new)


def bigram_hits(
    ids: np.ndarray,
    report_of: np.ndarray,
    lengths: np.ndarray,
    keys: np.ndarray,
) -> np.ndarray:
    """Per report: how many of its word bigrams (with sentence start and end) are in the
    sorted ``keys``; words with a negative id are in none."""
    n = len(lengths)
    starts = np.cumsum(lengths) - lengths
    shifted = ids + _FIRST_ID
    previous = np.empty_like(shifted)
    previous[1:] = shifted[:-1]
    nonempty = lengths > 0
    previous[starts[nonempty]] = _START_ID
    last = np.full(n, _START_ID, dtype=np.int64)
    last[nonempty] = shifted[starts[nonempty] + lengths[nonempty] - 1]
    pairs = np.where(
        (previous < _FIRST_ID - 1) | (shifted < _FIRST_ID - 1), -1, previous * _KEY_BASE + shifted
    )
    finals = np.where(last < _FIRST_ID - 1, -1, last * _KEY_BASE + _END_ID)
    inner = in_sorted(pairs, keys)
    hits = np.bincount(report_of, weights=inner, minlength=n) + in_sorted(finals, keys)
    return np.asarray(hits, dtype=float)


def in_sorted(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if not len(keys) or not len(values):
        return np.zeros(len(values))
    at = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return np.asarray(keys[at] == values, dtype=float)
