"""Simulated learner reports from STAPLE gold data.

The gold set of a prompt is the truth: a report is correct (``label`` true) when its normalized
answer is one of the prompt's gold translations. The course's current accepted list holds only
part of the gold set, so correct answers get rejected and reported.

Model, per prompt (``SimulationParams`` holds every number):

1. **Accepted list.** The gold translations, most frequent first, up to a coverage
   ``c ~ Uniform(coverage_min, coverage_max)`` of the learners' weight (at least one).
2. **Learners.** ``N ~ LogNormal(log(learners_median), learners_sigma)`` learners answer; each
   types a gold translation with probability ``g ~ Beta(gold_alpha, gold_beta)`` (the prompt's
   ease), picked by its weight, and otherwise a mistaken answer: a gold translation picked by
   weight with one mistake, or two with probability ``second_mistake``. Mistake kinds, drawn by
   ``mistake_weights``: a typo (letter substituted by one of the course's letters, dropped,
   doubled or swapped with its neighbour), missing accents (one word, or the whole answer),
   a dropped word, an extra word (from the prompt's other translations or the course), two
   neighbouring words swapped, a wrong inflection (a course word sharing the stem), a course
   word that does not fit, an English word of the prompt left untranslated. Some mistakes are
   common: a prompt has ``Poisson(common_mistakes)`` of them, with popularity ``1/rank``, and
   a share ``common_share`` of the mistaken learners make one of those (the rest a fresh one).
3. **Grading and reports.** Answers on the accepted list are graded correct and never reported.
   A rejected gold answer is reported with probability ``report_gold``, a mistaken one with
   ``report_mistake``. Since only reports matter, counts are drawn directly: a gold translation
   of weight ``w`` off the list gets ``Poisson(N·g·w·report_gold)`` reports, and
   ``Poisson(N·(1-g)·report_mistake)`` mistaken answers are generated (one landing on the
   accepted list is dropped, one landing on another gold translation is a correct report).
4. **Grouping.** Reports of one prompt with equal ``normalize_answer`` form are one record;
   ``times_reported`` counts them and ``answer`` keeps the first typed form (learners capitalize
   the first letter with probability ``capitalize`` and leave out the final punctuation with
   probability ``drop_final_punctuation``).

Defaults (``SimulationParams``): coverage 0.55-0.95; learners median 3000, sigma 0.8; ease
Beta(6, 3) (mean 0.67); report_gold 0.015, report_mistake 0.07; second_mistake 0.2;
common_mistakes 4, common_share 0.4; capitalize 0.5, drop_final_punctuation 0.4; mistake kinds
typo 0.28, missing_accents 0.08, drop_word 0.14, extra_word 0.10, swap_words 0.10,
wrong_inflection 0.14, wrong_word 0.10, untranslated 0.06.

With the defaults about 10% of reports are correct and ranking by ``times_reported`` reaches a
ROC AUC near 0.6, as in the article; neither is forced. Randomness comes from
``numpy.random.default_rng((seed, prompt hash))``: a prompt's reports depend only on the seed,
the prompt and its course's vocabulary, not on file order.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from reports_ml.models import Prompt, ReportRecord
from reports_ml.text import normalize_answer, strip_accents, tokenize

__all__ = ["SimulationParams", "simulate_course", "simulate_reports"]

MISTAKE_KINDS = (
    "typo",
    "missing_accents",
    "drop_word",
    "extra_word",
    "swap_words",
    "wrong_inflection",
    "wrong_word",
    "untranslated",
)


@dataclass(frozen=True)
class SimulationParams:
    """Parameters of the report simulator (see the module docstring)."""

    coverage_min: float = 0.55
    coverage_max: float = 0.95
    learners_median: float = 3000.0
    learners_sigma: float = 0.8
    gold_alpha: float = 6.0
    gold_beta: float = 3.0
    report_gold: float = 0.015
    report_mistake: float = 0.07
    second_mistake: float = 0.2
    common_mistakes: float = 4.0
    common_share: float = 0.4
    capitalize: float = 0.5
    drop_final_punctuation: float = 0.4
    mistake_weights: dict[str, float] = field(
        default_factory=lambda: {
            "typo": 0.28,
            "missing_accents": 0.08,
            "drop_word": 0.14,
            "extra_word": 0.10,
            "swap_words": 0.10,
            "wrong_inflection": 0.14,
            "wrong_word": 0.10,
            "untranslated": 0.06,
        },
    )

    def __post_init__(self) -> None:
        unknown = set(self.mistake_weights) - set(MISTAKE_KINDS)
        if unknown:
            raise ValueError(f"unknown mistake kinds: {sorted(unknown)}")
        if not 0.0 < self.coverage_min <= self.coverage_max <= 1.0:
            raise ValueError("coverage bounds must satisfy 0 < min <= max <= 1")


@dataclass
class _CourseWords:
    """What learners of a course know: its words (by frequency), stems and letters."""

    words: list[str]
    cumulative: np.ndarray
    by_stem: dict[str, list[str]]
    letters: str

    @classmethod
    def of(cls, prompts: Sequence[Prompt]) -> _CourseWords:
        counts: Counter[str] = Counter()
        for prompt in prompts:
            for translation in prompt.translations:
                counts.update(tokenize(normalize_answer(translation.text)))
        words = sorted(counts)
        by_stem: dict[str, list[str]] = {}
        for word in words:
            if len(word) >= 4:
                by_stem.setdefault(word[:4], []).append(word)
        letters = Counter(char for word, n in counts.items() for char in word * n)
        frequent = "".join(char for char, _ in letters.most_common(40) if char.isalpha())
        weights = np.array([counts[word] for word in words], dtype=float)
        return cls(words, np.cumsum(weights) / weights.sum(), by_stem, frequent or "aeiou")

    def frequent_word(self, rnd: random.Random) -> str:
        return self.words[int(np.searchsorted(self.cumulative, rnd.random(), side="right"))]


def simulate_reports(
    prompts_by_course: Mapping[str, Sequence[Prompt]],
    *,
    seed: int = 0,
    params: SimulationParams | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ReportRecord]:
    """Simulated reports of every course (see module docstring), grouped per prompt."""
    records: list[ReportRecord] = []
    for course, prompts in prompts_by_course.items():
        records.extend(
            simulate_course(course, prompts, seed=seed, params=params, progress=progress),
        )
    return records


def simulate_course(
    course: str,
    prompts: Sequence[Prompt],
    *,
    seed: int = 0,
    params: SimulationParams | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ReportRecord]:
    """Simulated reports of one course's prompts."""
    params = params or SimulationParams()
    words = _CourseWords.of(prompts)
    records: list[ReportRecord] = []
    for prompt in prompts:
        rng = np.random.default_rng([seed, _stable_int(course, prompt.prompt_id)])
        records.extend(_PromptSimulation(course, prompt, words, params, rng).run())
        if progress is not None:
            progress(1)
    return records


def _stable_int(*parts: str) -> int:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class _PromptSimulation:
    def __init__(
        self,
        course: str,
        prompt: Prompt,
        words: _CourseWords,
        params: SimulationParams,
        rng: np.random.Generator,
    ) -> None:
        self.course, self.prompt, self.words, self.params, self.rng = (
            course,
            prompt,
            words,
            params,
            rng,
        )
        self.rnd = random.Random(int(rng.integers(2**63)))
        texts = [translation.text for translation in prompt.translations]
        weights = np.array([translation.weight for translation in prompt.translations])
        self.weights = weights / weights.sum()
        self.cumulative = np.cumsum(self.weights)
        coverage = rng.uniform(params.coverage_min, params.coverage_max)
        n_accepted = max(1, int(np.searchsorted(self.cumulative, coverage)) + 1)
        self.accepted = tuple(texts[:n_accepted])
        self.accepted_forms = {normalize_answer(text) for text in self.accepted}
        self.gold_forms = [normalize_answer(text) for text in texts]
        self.gold_set = set(self.gold_forms)
        self.gold_tokens = [tokenize(form) for form in self.gold_forms]
        self.prompt_words = sorted({word for tokens in self.gold_tokens for word in tokens})
        self.english_words = [w for w in tokenize(normalize_answer(prompt.text)) if w.isalpha()]
        # Mistaken answers are built from words; they get the usual final punctuation back.
        top = texts[0]
        self.ending = top[-1] if top and not top[-1].isalnum() else ""

    def run(self) -> list[ReportRecord]:
        params, rng = self.params, self.rng
        learners = rng.lognormal(np.log(params.learners_median), params.learners_sigma)
        ease = rng.beta(params.gold_alpha, params.gold_beta)
        counts: Counter[str] = Counter()  # reports per normalized answer
        typed: dict[str, str] = {}  # normalized answer -> as the first learner typed it
        gold_counts = rng.poisson(learners * ease * self.weights * params.report_gold)
        for index in np.flatnonzero(gold_counts).tolist():
            form = self.gold_forms[index]
            if form not in self.accepted_forms:
                if form not in typed:
                    typed[form] = self._surface(self.prompt.translations[index].text)
                counts[form] += int(gold_counts[index])
        n_mistakes = int(rng.poisson(learners * (1.0 - ease) * params.report_mistake))
        n_common = int(rng.poisson(params.common_mistakes))
        common = self._mistaken_answers(n_common)
        popularity = 1.0 / np.arange(1, n_common + 1)
        from_common = rng.random(n_mistakes) < (params.common_share if common else 0.0)
        fresh = iter(self._mistaken_answers(int(n_mistakes - from_common.sum())))
        picks = rng.choice(
            max(n_common, 1),
            size=n_mistakes,
            p=popularity / popularity.sum() if common else None,
        )
        for use_common, pick in zip(from_common.tolist(), picks.tolist(), strict=True):
            text = common[pick] if use_common else next(fresh)
            form = normalize_answer(text)
            if form and form not in self.accepted_forms:  # accepted answers are not reported
                if form not in typed:
                    typed[form] = self._surface(text + self.ending)
                counts[form] += 1
        return [self._record(form, typed[form], count) for form, count in counts.items()]

    def _mistaken_answers(self, count: int) -> list[str]:
        """``count`` answers, each a gold translation (picked by weight) with mistakes."""
        kinds = list(self.params.mistake_weights)
        kind_p = np.array([self.params.mistake_weights[kind] for kind in kinds])
        drawn_kinds = self.rng.choice(len(kinds), size=(count, 2), p=kind_p / kind_p.sum())
        bases = np.searchsorted(self.cumulative, self.rng.random(count) * self.cumulative[-1])
        seconds = self.rng.random(count) < self.params.second_mistake
        answers = []
        for base, pair, second in zip(
            bases.tolist(),
            drawn_kinds.tolist(),
            seconds.tolist(),
            strict=True,
        ):
            tokens = list(self.gold_tokens[min(base, len(self.gold_tokens) - 1)])
            for kind_index in pair[: 1 + int(second)]:
                tokens = self._mistake(kinds[kind_index], tokens)
            answers.append(" ".join(tokens))
        return answers

    def _surface(self, text: str) -> str:
        ends_in_punctuation = bool(text) and not text[-1].isalnum()
        if ends_in_punctuation and self.rnd.random() < self.params.drop_final_punctuation:
            text = text[:-1]
        if self.rnd.random() < self.params.capitalize:
            text = text[:1].upper() + text[1:]
        return text

    def _record(self, form: str, text: str, count: int) -> ReportRecord:
        return ReportRecord(
            report_id="r"
            + hashlib.blake2b(
                f"{self.course}\x1f{self.prompt.prompt_id}\x1f{form}".encode(),
                digest_size=8,
            ).hexdigest(),
            course=self.course,
            prompt_id=self.prompt.prompt_id,
            prompt=self.prompt.text,
            answer=text,
            accepted=self.accepted,
            times_reported=count,
            label=form in self.gold_set,
        )

    # Mistakes: each takes and returns a list of words; none reads outside the course's data.

    def _mistake(self, kind: str, tokens: list[str]) -> list[str]:
        if not tokens:
            return tokens
        handler: Callable[[list[str]], list[str]] = getattr(self, f"_{kind}")
        return handler(tokens)

    def _position(self, tokens: list[str]) -> int:
        return self.rnd.randrange(len(tokens))

    def _typo(self, tokens: list[str]) -> list[str]:
        position = self._position(tokens)
        word = tokens[position]
        at = self.rnd.randrange(len(word))
        action = self.rnd.randrange(4)
        if action == 0:
            word = word[:at] + self.rnd.choice(self.words.letters) + word[at + 1 :]
        elif action == 1 and len(word) > 1:
            word = word[:at] + word[at + 1 :]
        elif action == 2:
            word = word[: at + 1] + word[at:]
        elif at + 1 < len(word):
            word = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
        else:
            word = word + self.rnd.choice(self.words.letters)
        return [*tokens[:position], word, *tokens[position + 1 :]]

    def _missing_accents(self, tokens: list[str]) -> list[str]:
        accented = [i for i, word in enumerate(tokens) if strip_accents(word) != word]
        if not accented:
            return self._typo(tokens)
        if self.rnd.random() < 0.3:
            return [strip_accents(word) for word in tokens]
        position = self.rnd.choice(accented)
        return [*tokens[:position], strip_accents(tokens[position]), *tokens[position + 1 :]]

    def _drop_word(self, tokens: list[str]) -> list[str]:
        if len(tokens) < 2:
            return self._typo(tokens)
        position = self._position(tokens)
        return tokens[:position] + tokens[position + 1 :]

    def _extra_word(self, tokens: list[str]) -> list[str]:
        if self.rnd.random() < 0.5:
            word = self.rnd.choice(self.prompt_words)
        else:
            word = self.words.frequent_word(self.rnd)
        position = self.rnd.randrange(len(tokens) + 1)
        return [*tokens[:position], word, *tokens[position:]]

    def _swap_words(self, tokens: list[str]) -> list[str]:
        if len(tokens) < 2:
            return self._typo(tokens)
        position = self.rnd.randrange(len(tokens) - 1)
        return [*tokens[:position], tokens[position + 1], tokens[position], *tokens[position + 2 :]]

    def _wrong_inflection(self, tokens: list[str]) -> list[str]:
        by_stem = self.words.by_stem
        candidates = [i for i, word in enumerate(tokens) if len(by_stem.get(word[:4], ())) > 1]
        if not candidates:
            return self._typo(tokens)
        position = self.rnd.choice(candidates)
        word = tokens[position]
        others = [other for other in self.words.by_stem[word[:4]] if other != word]
        return [*tokens[:position], self.rnd.choice(others), *tokens[position + 1 :]]

    def _wrong_word(self, tokens: list[str]) -> list[str]:
        position = self._position(tokens)
        return [*tokens[:position], self.words.frequent_word(self.rnd), *tokens[position + 1 :]]

    def _untranslated(self, tokens: list[str]) -> list[str]:
        if not self.english_words:
            return self._wrong_word(tokens)
        position = self._position(tokens)
        word = self.rnd.choice(self.english_words)
        return [*tokens[:position], word, *tokens[position + 1 :]]
