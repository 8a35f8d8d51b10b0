"""A second, independent report generator, for evaluation only.

``reports_ml.simulate`` is the generator the scorer's features and settings were chosen on; a
model can look good on it only because both were designed around the same mistakes. This one
is written apart from it and is used only to measure, never to choose: its learners make other
mistakes in another mix, a larger share of reports is correct, accepted lists are often short
(a single accepted translation is common), and courses are written in other scripts.

Courses. Every STAPLE course is used as it is (``<course>``) and rendered into another script
(``<course>~ko``, ``~th``, ``~ja``): each word of the course maps to one made-up word of the
script, the same word always to the same made-up word, so translations keep their shared
words and a course keeps its vocabulary. Korean keeps spaces between words (Hangul syllables
from letter pairs); Thai and Japanese are written without spaces (Thai letters with tone marks
for accents; a kanji for a word's first letters and kana for the rest, ending in 。).

Per prompt (randomness from ``numpy.random.default_rng((seed, prompt hash))``):

1. **Accepted list**: the first ``Geometric(accepted_p)`` gold translations by weight (at
   least one; at most all but one when the prompt has more than one).
2. **Reports**: ``Poisson(reports_mean)`` answers (at least one). Each is, with
   probability ``correct_share``, a gold translation off the accepted list (picked by weight)
   and otherwise a mistaken answer: a gold translation with one to three mistakes from
   ``mistake_weights``: ``truncated`` (the last words left off), ``merged`` (two words run
   together), ``stutter`` (a word typed twice), ``foreign_phrase`` (two words replaced by two
   from another prompt's translation), ``other_prompt`` (a whole translation of another
   prompt), ``blend`` (the first half of one gold translation and the second half of another),
   ``char_slip`` (a character replaced by its neighbour in the script's code chart),
   ``char_drop`` (a character left out).
3. **Labels**: correct when the normalized answer is a gold translation (a blend or a merge
   can land on one). Answers that land on the accepted list are dropped.
4. **Counts**: ``times_reported`` is ``1 + NegativeBinomial(2, p)`` with a mean that grows with
   the translation's weight for correct answers and is flat for mistakes.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from reports_ml.models import Prompt, ReportRecord, Translation
from reports_ml.text import normalize_answer

__all__ = ["HoldoutParams", "render_course", "simulate_holdout"]

SCRIPTS = ("ko", "th", "ja")
MISTAKE_KINDS = (
    "truncated",
    "merged",
    "stutter",
    "foreign_phrase",
    "other_prompt",
    "blend",
    "char_slip",
    "char_drop",
)


@dataclass(frozen=True)
class HoldoutParams:
    """Parameters of the held-out generator (see the module docstring)."""

    accepted_p: float = 0.45
    reports_mean: float = 15.0
    correct_share: float = 0.22
    extra_mistake: float = 0.3
    correct_count_mean: float = 6.0
    mistake_count_mean: float = 2.5
    mistake_weights: dict[str, float] = field(
        default_factory=lambda: {
            "truncated": 0.12,
            "merged": 0.10,
            "stutter": 0.08,
            "foreign_phrase": 0.16,
            "other_prompt": 0.08,
            "blend": 0.12,
            "char_slip": 0.20,
            "char_drop": 0.14,
        },
    )

    def __post_init__(self) -> None:
        unknown = set(self.mistake_weights) - set(MISTAKE_KINDS)
        if unknown:
            raise ValueError(f"unknown mistake kinds: {sorted(unknown)}")


def _stable(*parts: str) -> int:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


# --- scripts --------------------------------------------------------------------------------

_THAI_LETTERS = [chr(c) for c in range(0x0E01, 0x0E2F)] + [chr(c) for c in range(0x0E40, 0x0E45)]
_THAI_TONES = [chr(c) for c in range(0x0E48, 0x0E4C)]
_HIRAGANA = [chr(c) for c in range(0x3042, 0x3094)]


def _hangul(word: str) -> str:
    pairs = [word[i : i + 2] for i in range(0, len(word), 2)]
    return "".join(chr(0xAC00 + _stable("ko", pair) % 11172) for pair in pairs)


def _thai(word: str) -> str:
    out = []
    for char in unicodedata.normalize("NFD", word):
        if unicodedata.combining(char):
            out.append(_THAI_TONES[ord(char) % len(_THAI_TONES)])
        else:
            out.append(_THAI_LETTERS[_stable("th", char) % len(_THAI_LETTERS)])
    return "".join(out)


def _japanese(word: str) -> str:
    head = chr(0x4E00 + _stable("ja", word[:3]) % 20000)
    tail = [word[i : i + 2] for i in range(3, len(word), 2)]
    return head + "".join(_HIRAGANA[_stable("ja", pair) % len(_HIRAGANA)] for pair in tail)


_RENDER: dict[str, Callable[[str], str]] = {"ko": _hangul, "th": _thai, "ja": _japanese}
_SPACED = {"ko": True, "th": False, "ja": False}
_ENDING = {"ko": ".", "th": "", "ja": "。"}


def _words(text: str) -> list[str]:
    return normalize_answer(text).split()


class _Script:
    """Writes word lists of one course in one script (or in the course's own, ``None``)."""

    def __init__(self, script: str | None) -> None:
        self.script = script
        self._cache: dict[str, str] = {}

    def word(self, word: str) -> str:
        if self.script is None:
            return word
        rendered = self._cache.get(word)
        if rendered is None:
            rendered = self._cache[word] = _RENDER[self.script](word)
        return rendered

    def words(self, words: Sequence[str]) -> list[str]:
        return [self.word(w) for w in words]

    def join(self, words: Sequence[str]) -> str:
        if self.script is None:
            return " ".join(words)
        return (" " if _SPACED[self.script] else "").join(words) + _ENDING[self.script]


def render_course(prompts: Sequence[Prompt], script: str) -> list[Prompt]:
    """The course's prompts with their translations written in ``script`` (ko, th or ja)."""
    if script not in _RENDER:
        raise ValueError(f"unknown script {script!r}; known: {', '.join(SCRIPTS)}")
    writer = _Script(script)
    return [
        prompt.model_copy(
            update={
                "translations": tuple(
                    Translation(text=writer.join(writer.words(_words(t.text))), weight=t.weight)
                    for t in prompt.translations
                )
            }
        )
        for prompt in prompts
    ]


# --- reports --------------------------------------------------------------------------------


def simulate_holdout(
    prompts_by_course: Mapping[str, Sequence[Prompt]],
    *,
    seed: int = 0,
    scripts: Sequence[str] = SCRIPTS,
    params: HoldoutParams | None = None,
) -> list[ReportRecord]:
    """Reports of every course as it is and rendered in each of ``scripts`` (see module
    docstring); course names of the rendered ones end in ``~<script>``."""
    params = params or HoldoutParams()
    records: list[ReportRecord] = []
    for course, prompts in prompts_by_course.items():
        for script in (None, *scripts):
            name = course if script is None else f"{course}~{script}"
            records.extend(_Course(name, prompts, _Script(script), params, seed).reports())
    return records


class _Course:
    def __init__(
        self,
        name: str,
        prompts: Sequence[Prompt],
        script: _Script,
        params: HoldoutParams,
        seed: int,
    ) -> None:
        self.name, self.prompts, self.script, self.params, self.seed = (
            name,
            list(prompts),
            script,
            params,
            seed,
        )
        # Every prompt's translations as word lists in the course's script.
        self.gold = [
            [script.words(_words(t.text)) for t in prompt.translations] for prompt in prompts
        ]
        kinds = list(params.mistake_weights)
        weights = np.array([params.mistake_weights[k] for k in kinds])
        self.kinds, self.kind_p = kinds, weights / weights.sum()

    def reports(self) -> list[ReportRecord]:
        out: list[ReportRecord] = []
        for position, prompt in enumerate(self.prompts):
            rng = np.random.default_rng([self.seed, _stable(self.name, prompt.prompt_id)])
            out.extend(self._prompt_reports(position, prompt, rng))
        return out

    def _prompt_reports(
        self,
        position: int,
        prompt: Prompt,
        rng: np.random.Generator,
    ) -> list[ReportRecord]:
        gold = self.gold[position]
        texts = [self.script.join(words) for words in gold]
        weights = np.array([t.weight for t in prompt.translations], dtype=float)
        weights = weights / weights.sum()
        n_accepted = min(int(rng.geometric(self.params.accepted_p)), max(1, len(texts) - 1))
        accepted = tuple(texts[:n_accepted])
        accepted_forms = {normalize_answer(t) for t in accepted}
        gold_forms = {normalize_answer(t) for t in texts}
        off_list = np.arange(n_accepted, len(texts))
        found: dict[str, tuple[str, int]] = {}
        for _ in range(max(1, int(rng.poisson(self.params.reports_mean)))):
            if off_list.size and rng.random() < self.params.correct_share:
                p = weights[off_list] / weights[off_list].sum()
                pick = int(rng.choice(off_list, p=p))
                text = texts[pick]
                mean = self.params.correct_count_mean * (0.3 + 5 * weights[pick])
            else:
                base = int(rng.choice(len(gold), p=weights))
                words = list(gold[base])
                for _ in range(
                    1
                    + int(rng.random() < self.params.extra_mistake)
                    + int(rng.random() < self.params.extra_mistake / 3)
                ):
                    kind = self.kinds[int(rng.choice(len(self.kinds), p=self.kind_p))]
                    words = self._mistake(kind, words, position, rng)
                text = self.script.join(words)
                mean = self.params.mistake_count_mean
            form = normalize_answer(text)
            if not form or form in accepted_forms or form in found:
                continue
            times = 1 + int(rng.negative_binomial(2, 2 / (2 + mean)))
            found[form] = (text if rng.random() < 0.5 else text.upper(), times)
        return [
            ReportRecord(
                report_id="h"
                + hashlib.blake2b(
                    f"{self.name}\x1f{prompt.prompt_id}\x1f{form}".encode(),
                    digest_size=8,
                ).hexdigest(),
                course=self.name,
                prompt_id=prompt.prompt_id,
                prompt=prompt.text,
                answer=text[:2000],
                accepted=accepted,
                times_reported=times,
                label=form in gold_forms,
            )
            for form, (text, times) in found.items()
        ]

    def _mistake(
        self,
        kind: str,
        words: list[str],
        position: int,
        rng: np.random.Generator,
    ) -> list[str]:
        if not words:
            return words
        at = int(rng.integers(len(words)))
        if kind == "truncated" and len(words) > 1:
            return words[: max(1, len(words) - int(rng.integers(1, 3)))]
        if kind == "merged" and len(words) > 1:
            at = min(at, len(words) - 2)
            return [*words[:at], words[at] + words[at + 1], *words[at + 2 :]]
        if kind == "stutter":
            return [*words[: at + 1], words[at], *words[at + 1 :]]
        if kind in ("foreign_phrase", "other_prompt") and len(self.gold) > 1:
            other = int(rng.integers(len(self.gold) - 1))
            other += other >= position
            translation = self.gold[other][int(rng.integers(len(self.gold[other])))]
            if kind == "other_prompt" or len(translation) < 2:
                return list(translation)
            start = int(rng.integers(len(translation) - 1))
            return [*words[:at], *translation[start : start + 2], *words[at + 2 :]]
        if kind == "blend" and len(self.gold[position]) > 1:
            second = self.gold[position][int(rng.integers(len(self.gold[position])))]
            return [*words[: len(words) // 2], *second[len(second) // 2 :]]
        word = words[at]
        i = int(rng.integers(len(word)))
        if kind == "char_drop" and len(word) > 1:
            word = word[:i] + word[i + 1 :]
        else:  # char_slip, and the fallback of kinds that do not fit the answer
            step = 1 if rng.random() < 0.5 else -1
            word = word[:i] + chr(max(0x41, ord(word[i]) + step)) + word[i + 1 :]
        return [*words[:at], word, *words[at + 1 :]]
