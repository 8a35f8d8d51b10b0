"""Answer normalization and tokenization, the same for every language.

``normalize_answer`` defines when two reported answers are "the same answer": Unicode NFC,
case folded, every punctuation character (Unicode category P*) read as a space, runs of
white space collapsed. Accents are kept: in Vietnamese, Hungarian or Portuguese they change
the word. ``tokenize`` splits a normalized answer into words: at spaces, and into single
characters for scripts written without spaces between words (Han, Hiragana, Katakana).
Scripts such as Thai, Lao, Khmer and Myanmar are kept as space-separated runs.

No outside NLP resources are used, so nothing here is tied to a language.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np

__all__ = [
    "normalize_answer",
    "normalize_answers",
    "strip_accents",
    "strip_accents_all",
    "strip_accents_decomposed",
    "tokenize",
    "tokenize_all",
]

# Scripts whose words are not separated by spaces and whose characters are (close to) words.
_CHARACTER_SCRIPTS = (
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
_HAS_CHARACTER_SCRIPT = re.compile(f"[{_CHARACTER_SCRIPTS}]")
_CHARACTER_SCRIPT_TOKEN = re.compile(f"[{_CHARACTER_SCRIPTS}]|[^\\s{_CHARACTER_SCRIPTS}]+")


def _character_class(codes: list[int]) -> str:
    """A regex character class for ``codes`` written as ranges (compact and fast to match)."""
    parts: list[str] = []
    start = previous = codes[0]
    for code in [*codes[1:], -2]:
        if code == previous + 1:
            previous = code
            continue
        first, last = re.escape(chr(start)), re.escape(chr(previous))
        parts.append(first if start == previous else f"{first}-{last}")
        start = previous = code
    return "[" + "".join(parts) + "]"


# Planes 0-3 and 14 hold every assigned character that is not private use (planes 4-13 are
# unassigned, 15-16 private use): scanning only them keeps building the tables quick.
_SCANNED = (range(0x40000), range(0xE0000, 0xF0000))


def _codes_where(wanted: Callable[[str], bool]) -> tuple[list[int], list[int]]:
    """Code points with ``wanted(char)``: those in the Basic Multilingual Plane, and the rest."""
    codes = [code for block in _SCANNED for code in block if wanted(chr(code))]
    return [c for c in codes if c <= 0xFFFF], [c for c in codes if c > 0xFFFF]


# From this many characters on, a text is cleaned faster by looking its code points up in
# tables (NumPy) than by regular expressions, whose fixed cost is lower.
_ARRAYS_FROM = 1000

# Matching a class of BMP ranges is fast; a class spanning all planes is not (the regex engine
# falls back to a slow path), so characters beyond the BMP get their own, rarely used pattern.
_BEYOND_BMP = re.compile("[\U00010000-\U0010ffff]")


@cache
def _punctuation_codes() -> tuple[list[int], list[int]]:
    return _codes_where(lambda char: unicodedata.category(char).startswith("P"))


@cache
def _punctuation() -> tuple[re.Pattern[str], re.Pattern[str]]:
    bmp, beyond = _punctuation_codes()
    return re.compile(_character_class(bmp)), re.compile(_character_class(beyond))


@cache
def _separators() -> np.ndarray:
    """Per code point: whether normalization reads it as a space (punctuation and white
    space, the newline between the texts of a list excepted)."""
    return _code_table(*_punctuation_codes(), *_codes_where(str.isspace), excluded="\n")


def _is_accent(char: str) -> bool:
    # Canonical combining classes 7 (nukta) and 9 (virama) build Indic letters: not accents.
    return unicodedata.combining(char) not in (0, 7, 9)


@cache
def _accent_codes() -> tuple[list[int], list[int]]:
    return _codes_where(_is_accent)


@cache
def _accents() -> tuple[re.Pattern[str], re.Pattern[str]]:
    bmp, beyond = _accent_codes()
    return re.compile(_character_class(bmp) + "+"), re.compile(_character_class(beyond) + "+")


@cache
def _accent_table() -> np.ndarray:
    return _code_table(*_accent_codes())


def _code_table(*codes: list[int], excluded: str = "") -> np.ndarray:
    """A boolean array over all code points, true at ``codes`` but not at ``excluded``."""
    table = np.zeros(sys.maxunicode + 1, dtype=bool)
    for some in codes:
        table[some] = True
    table[list(map(ord, excluded))] = False
    return table


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _text_of(points: np.ndarray) -> str:
    return points.astype("<u4", copy=False).tobytes().decode("utf-32-le", "surrogatepass")


def normalize_answer(text: str) -> str:
    """The form under which identical answers are grouped.

    >>> normalize_answer("  Éjjel-nappal  rá gondolok! ")
    'éjjel nappal rá gondolok'
    """
    return unicodedata.normalize("NFC", " ".join(_fold(text).split()))


def normalize_answers(texts: Sequence[str]) -> list[str]:
    """``normalize_answer`` of each text; much faster than one call per text for long lists."""
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1:  # a text held a newline itself
        return [normalize_answer(text) for text in texts]
    # Newline neither composes nor changes case, so the whole list is normalized at once.
    return unicodedata.normalize("NFC", _folded_lines(joined)).split("\n")


def _folded_lines(text: str) -> str:
    """``" ".join(line.split())`` of each line of ``_fold(text)``: by regular expressions for a
    short text, by looking code points up in a table for a long one."""
    if len(text) < _ARRAYS_FROM:
        return "\n".join(" ".join(line.split()) for line in _fold(text).split("\n"))
    points = _code_points(unicodedata.normalize("NFC", text).casefold())
    separator = _separators()[points]
    letter = ~separator
    letter &= points != 0x0A
    # A run is kept, as one space, only after a letter: so never at a line's start, and at a
    # line's end it is the space before the newline, dropped below.
    kept = ~separator
    kept[1:] |= separator[1:] & letter[:-1]
    spaced = _text_of(np.where(separator, 0x20, points)[kept])
    return spaced.replace(" \n", "\n").removesuffix(" ")


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFC", text).casefold()
    bmp, beyond = _punctuation()
    spaced = bmp.sub(" ", folded)
    if _BEYOND_BMP.search(spaced) is not None:
        spaced = beyond.sub(" ", spaced)
    # casefold can decompose (e.g. U+0130): callers compose again after collapsing spaces.
    return spaced


def tokenize(normalized: str) -> list[str]:
    """Words of an already normalized answer (see module docstring)."""
    if _HAS_CHARACTER_SCRIPT.search(normalized) is None:
        return normalized.split()
    return _CHARACTER_SCRIPT_TOKEN.findall(normalized)


def tokenize_all(normalized: Sequence[str]) -> list[list[str]]:
    """``tokenize`` of each normalized answer; the script test is made once for the list."""
    if _HAS_CHARACTER_SCRIPT.search("\n".join(normalized)) is None:
        return [text.split() for text in normalized]
    return list(map(tokenize, normalized))


def strip_accents_all(texts: Sequence[str]) -> list[str]:
    """``strip_accents`` of each text, done on the whole list at once."""
    stripped = strip_accents("\n".join(texts)).split("\n")
    return stripped if len(stripped) == len(texts) else [strip_accents(text) for text in texts]


def strip_accents_decomposed(decomposed: Sequence[str]) -> list[str]:
    """``strip_accents_all`` of texts already decomposed (NFD) and free of newlines."""
    return _without_accents("\n".join(decomposed)).split("\n") if decomposed else []


def strip_accents(text: str) -> str:
    """``text`` without combining marks (diacritics, tone marks, vowel points)."""
    return text if text.isascii() else _without_accents(unicodedata.normalize("NFD", text))


def _without_accents(decomposed: str) -> str:
    """``strip_accents`` of a text already decomposed (NFD)."""
    if decomposed.isascii():
        return decomposed
    if len(decomposed) < _ARRAYS_FROM:
        bmp, beyond = _accents()
        stripped = bmp.sub("", decomposed)
        if _BEYOND_BMP.search(stripped) is not None:
            stripped = beyond.sub("", stripped)
    else:
        points = _code_points(decomposed)
        stripped = _text_of(points[~_accent_table()[points]])
    return unicodedata.normalize("NFC", stripped)
