"""Integer keys of word bigrams and character n-grams, and the word codes of answers.

Word sequences are compared as strings with one code point per word (``codes``); n-gram
membership is tested on sorted NumPy arrays of int64 keys (``in_sorted``), so a whole prompt's
reports are looked up at once: a word bigram is two word ids (sentence start and end framed),
a character trigram three code points of 21 bits each, a character 4-gram a 63-bit hash of
four code points (collisions are negligible at a course's size), and a text's start and end
trigrams are framed by marks that stand nowhere else (``boundary_keys``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "bigram_hits",
    "bigram_keys",
    "bigram_keys_of",
    "boundary_keys",
    "character_keys",
    "code",
    "codes",
    "in_sorted",
    "in_sorted_beyond",
    "merged_keys",
    "quadgram_keys",
    "runs",
    "sorted_unique",
    "trigram_keys",
]

# Word ids in bigram keys: 0 and 1 frame the sentence, words count from 2.
_START_ID, _END_ID, _FIRST_ID = 0, 1, 2
_KEY_BASE = 1 << 31
# Marks of a text's start and end in ``boundary_keys`` (control characters: never in an answer
# after normalization, which reads them as spaces or drops them).
_TEXT_START, _TEXT_END = "\x02", "\x03"


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
        return _no_keys(), _no_keys()
    points = _points(texts, " ", " ")
    return _within_texts(_trigrams(points), points, 3)


def quadgram_keys(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the character 4-grams of ``texts`` (each framed by spaces) and the position of
    the text each comes from."""
    if not texts:
        return _no_keys(), _no_keys()
    points = _points(texts, " ", " ")
    return _within_texts(_quadgrams(points, _trigrams(points)), points, 4)


def boundary_keys(texts: Sequence[str]) -> np.ndarray:
    """Per text, the keys of its first and of its last character trigram with the text's start
    and end marked (two columns; -1 for an empty text): whether an answer begins and ends as
    accepted translations do."""
    if not texts:
        return np.zeros((0, 2), dtype=np.int64)
    points = _points(texts, _TEXT_START, _TEXT_END)
    return _boundaries(points, np.flatnonzero(points == 0x0A))


def character_keys(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique keys of the trigrams, 4-grams and boundaries of ``texts`` (those of
    ``trigram_keys``, ``quadgram_keys`` and ``boundary_keys``), from one array of code points."""
    if not texts:
        return _no_keys(), _no_keys(), _no_keys()
    points = _points(texts, " ", " ")
    trigrams = _trigrams(points)
    quadgrams = _quadgrams(points, trigrams)
    within_trigrams, _ = _within_texts(trigrams, points, 3)
    within_quadgrams, _ = _within_texts(quadgrams, points, 4)
    # The boundaries read the same code points with each text's frame marked as such.
    breaks = np.flatnonzero(points == 0x0A)
    points[_starts(breaks)] = ord(_TEXT_START)
    points[breaks - 1] = ord(_TEXT_END)
    return (
        sorted_unique(within_trigrams),
        sorted_unique(within_quadgrams),
        sorted_unique(_boundaries(points, breaks).ravel()),
    )


def _no_keys() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def _points(texts: Sequence[str], start: str, end: str) -> np.ndarray:
    """Code points (int64) of ``texts``, each as ``start``, the text, ``end`` and a newline."""
    framed = start + (end + "\n" + start).join(texts) + end + "\n"
    if framed.count("\n") != len(texts):  # a newline in a text stands for a space
        framed = "".join(start + text.replace("\n", " ") + end + "\n" for text in texts)
    return np.frombuffer(framed.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(
        np.int64
    )


def _starts(breaks: np.ndarray) -> np.ndarray:
    """Where each text's start mark stands in ``_points`` (``breaks``: where its newlines do)."""
    return np.concatenate([[0], breaks[:-1] + 1])


def _trigrams(points: np.ndarray) -> np.ndarray:
    """Keys of the trigrams starting at each of ``points`` but the last two."""
    keys: np.ndarray = points[:-2] << 42
    keys |= points[1:-1] << 21
    keys |= points[2:]
    return keys


def _quadgrams(points: np.ndarray, trigrams: np.ndarray) -> np.ndarray:
    """Keys of the 4-grams starting at each of ``points`` but the last three (``trigrams``:
    ``_trigrams(points)``)."""
    mixed = trigrams[:-1].view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    mixed += points[3:].view(np.uint64)
    mixed >>= np.uint64(1)
    return mixed.view(np.int64)


def _broken(breaks: np.ndarray, count: int, width: int) -> np.ndarray:
    """Positions of those of the ``count`` n-grams of ``width`` code points that hold one of
    the ``breaks``."""
    broken = (breaks[:, None] - np.arange(width)).ravel()
    return broken[(broken >= 0) & (broken < count)]


def _within_texts(
    keys: np.ndarray, points: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``keys`` of n-grams of ``width`` code points inside a text, and that text's
    position."""
    breaks = points == 0x0A
    owner = np.cumsum(breaks)[: len(keys)]
    unbroken = np.ones(len(keys), dtype=bool)
    unbroken[_broken(np.flatnonzero(breaks), len(keys), width)] = False
    return keys[unbroken], owner[unbroken]


def _boundaries(points: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """``boundary_keys`` of the texts in ``points`` (framed by the text marks)."""
    starts, ends = _starts(breaks), breaks - 1
    keys = np.full((len(breaks), 2), -1, dtype=np.int64)
    nonempty = ends - starts > 1
    keys[nonempty] = _trigram(points, np.stack([starts[nonempty], ends[nonempty] - 2], axis=1))
    return keys


def _trigram(points: np.ndarray, at: np.ndarray) -> np.ndarray:
    keys: np.ndarray = (points[at] << 42) | (points[at + 1] << 21) | points[at + 2]
    return keys


def runs(flags: np.ndarray, owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per owner (0 to ``n`` - 1, ``owner`` sorted): how many runs of consecutive true
    ``flags`` it has and how long its longest one is."""
    count = np.zeros(n)
    longest = np.zeros(n)
    if not flags.any():
        return count, longest
    previous = np.zeros(len(flags), dtype=bool)
    previous[1:] = flags[:-1] & (owner[1:] == owner[:-1])
    starts = flags & ~previous
    count += np.bincount(owner[starts], minlength=n)
    run_of = np.cumsum(starts) - 1
    lengths = np.bincount(run_of[flags])
    np.maximum.at(longest, owner[starts], lengths)
    return count, longest


def bigram_keys(ids: Sequence[int]) -> np.ndarray:
    """Keys of the word-id bigrams of one text, with sentence start and end."""
    framed = np.array([_START_ID, *[i + _FIRST_ID for i in ids], _END_ID], dtype=np.int64)
    return framed[:-1] * _KEY_BASE + framed[1:]


def bigram_keys_of(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sorted unique keys of the word-id bigrams of several texts at once (``ids`` of all
    their words in order, ``lengths`` words per text), with sentence start and end."""
    if not len(lengths):
        return np.zeros(0, dtype=np.int64)
    # Each text becomes start, its words, end: an end and the next start never pair up.
    framed = np.full(len(ids) + 2 * len(lengths), _START_ID, dtype=np.int64)
    starts = np.cumsum(lengths + 2) - (lengths + 2)
    inner = np.ones(len(framed), dtype=bool)
    inner[starts] = False
    inner[starts + lengths + 1] = False
    framed[inner] = ids + _FIRST_ID
    framed[starts + lengths + 1] = _END_ID
    keys = framed[:-1] * _KEY_BASE + framed[1:]
    pair = np.ones(len(keys), dtype=bool)
    pair[(starts + lengths + 1)[:-1]] = False  # end of one text, start of the next
    return sorted_unique(keys[pair])


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """``np.unique(keys)`` by sorting (faster than NumPy's hashing for these key arrays)."""
    return _unique_of_sorted(np.sort(keys))


def _unique_of_sorted(ordered: np.ndarray) -> np.ndarray:
    """``ordered`` (sorted) with each key once."""
    keep = np.empty(len(ordered), dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


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


def in_sorted_beyond(values: np.ndarray, found: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``in_sorted(values, keys)`` for ``keys`` that hold every value already ``found`` (a
    course's keys hold its prompts'): only the others are looked up, each distinct one once,
    in the large array."""
    result = found.copy()
    rest = np.flatnonzero(found == 0)
    if len(rest) and len(keys):
        distinct, position = np.unique(values[rest], return_inverse=True)
        result[rest] = in_sorted(distinct, keys)[position]
    return result


def in_sorted(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if not len(keys) or not len(values):
        return np.zeros(len(values))
    at = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return np.asarray(keys[at] == values, dtype=float)
