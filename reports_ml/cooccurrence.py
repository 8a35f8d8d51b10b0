"""Which prompt words and which translation words go together in a course, learned from its
accepted lists: a bilingual signal that knows no language.

Every accepted list a course shows pairs the words of its prompt (source words) with the words
of its accepted translations (target words). Over a course's prompts, a target word that
translates a source word stands in the accepted lists of the prompts holding that source word
and rarely elsewhere; their association is the cosine of the two words' prompt sets,
``pairs / sqrt(source prompts × target prompts)``. An answer's word off the prompt's accepted
list that is associated with none of the prompt's source words probably translates another
prompt; a source word that the accepted translations render but no word of the answer does was
probably left out.

Associations are read with the asked prompt left out (``association(..., own=...)``), so a
prompt's own accepted list never vouches for its own words: what counts is what the other
prompts of the course say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TRANSLATION_FEATURES", "TranslationCounts", "translation_columns"]

_TARGET_BITS = 32


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def _counted(counts: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``counts`` (grown to cover ``ids``) with one added at each of the distinct ``ids``."""
    if not len(ids):
        return counts
    grown = np.zeros(max(len(counts), int(ids.max()) + 1), dtype=np.int64)
    grown[: len(counts)] = counts
    grown[np.unique(ids)] += 1
    return grown


@dataclass
class TranslationCounts:
    """Per course: in how many prompts each source word, each target word and each pair of the
    two stand (target words by the course vocabulary's ids)."""

    source_id: dict[str, int] = field(default_factory=dict)
    source_prompts: np.ndarray = field(default_factory=_empty)
    target_prompts: np.ndarray = field(default_factory=_empty)
    # Sorted keys (source id << 32 | target id) and, aligned, how many prompts hold the pair.
    pair_keys: np.ndarray = field(default_factory=_empty)
    pair_prompts: np.ndarray = field(default_factory=_empty)

    def source_ids(self, words: Sequence[str]) -> np.ndarray:
        """Ids of source words (-1 for a word no prompt of the course held)."""
        get = self.source_id.get
        return np.fromiter((get(word, -1) for word in words), dtype=np.int64, count=len(words))

    def add(self, source_words: Sequence[str], target_ids: np.ndarray) -> None:
        """Count one prompt: its distinct source words and the distinct target ids of its
        accepted list."""
        id_of = self.source_id
        sources = np.fromiter(
            (id_of.setdefault(word, len(id_of)) for word in dict.fromkeys(source_words)),
            dtype=np.int64,
        )
        targets = np.unique(target_ids)
        self.source_prompts = _counted(self.source_prompts, sources)
        self.target_prompts = _counted(self.target_prompts, targets)
        if not len(sources) or not len(targets):
            return
        keys = np.sort(((sources[:, None] << _TARGET_BITS) | targets[None, :]).ravel())
        at = np.searchsorted(self.pair_keys, keys)
        known = at < len(self.pair_keys)
        known[known] = self.pair_keys[at[known]] == keys[known]
        self.pair_prompts[at[known]] += 1
        fresh = ~known
        self.pair_keys = np.insert(self.pair_keys, at[fresh], keys[fresh])
        self.pair_prompts = np.insert(self.pair_prompts, at[fresh], 1)

    def pairs(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """How many prompts hold each (source, target) pair: a ``len(sources)`` by
        ``len(targets)`` matrix (0 where either id is negative)."""
        out = np.zeros((len(sources), len(targets)))
        if not len(self.pair_keys) or not len(sources) or not len(targets):
            return out
        keys = (sources[:, None] << _TARGET_BITS) | targets[None, :]
        at = np.minimum(np.searchsorted(self.pair_keys, keys), len(self.pair_keys) - 1)
        found = (self.pair_keys[at] == keys) & (sources[:, None] >= 0) & (targets[None, :] >= 0)
        out[found] = self.pair_prompts[at[found]]
        return out

    def association(self, sources: np.ndarray, targets: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Cosine association of each source word of a prompt with each target word, with that
        prompt left out (its source words are ``sources``; ``own`` flags the targets on its
        accepted list). 0 where the other prompts never hold one of the two."""
        pairs = self.pairs(sources, targets) - own[None, :]
        source_prompts = self._prompts(self.source_prompts, sources) - 1
        target_prompts = self._prompts(self.target_prompts, targets) - own
        scale = np.sqrt(np.maximum(source_prompts[:, None] * target_prompts[None, :], 1))
        return np.where(pairs > 0, pairs / scale, 0.0)

    @staticmethod
    def _prompts(counts: np.ndarray, ids: np.ndarray) -> np.ndarray:
        inside = (ids >= 0) & (ids < len(counts))
        return np.where(inside, counts[np.where(inside, ids, 0)] if len(counts) else 0, 0)


# An answer's word off the accepted list counts as translating another prompt when its
# association with every source word of this prompt stays below this; a source word counts as
# rendered by the accepted list at this association or above, and as left out by an answer whose
# words reach less than half of it.
_FOREIGN_BELOW = 0.15
_RENDERED_FROM = 0.2
_LEFT_OUT_BELOW = 0.5

TRANSLATION_FEATURES = (
    "new_words_foreign",
    "new_words_least_explained",
    "new_words_explained_mean",
    "source_words_left_out",
    "source_rendering_gap",
    "source_words_rendered",
)


def translation_columns(
    counts: TranslationCounts,
    sources: np.ndarray,
    accepted_targets: np.ndarray,
    token_targets: np.ndarray,
    token_own: np.ndarray,
    report_of: np.ndarray,
    n: int,
) -> dict[str, np.ndarray]:
    """``TRANSLATION_FEATURES`` of one prompt's ``n`` answers: ``sources`` are the source ids
    of the prompt's words, ``accepted_targets`` the target ids of its accepted list's words,
    and per answer word (in answer order, ``report_of`` each) its target id (-1 if the course
    never accepted it) and whether it is on the prompt's accepted list."""
    own_list = np.ones(len(accepted_targets))
    rendered = counts.association(sources, accepted_targets, own_list).max(axis=1, initial=0.0)
    strong = rendered >= _RENDERED_FROM
    distinct, token_column = np.unique(token_targets, return_inverse=True)
    own_of_distinct = np.zeros(len(distinct))
    own_of_distinct[token_column] = token_own
    per_token = counts.association(sources, distinct, own_of_distinct)[:, token_column]
    explained = per_token.max(axis=0, initial=0.0)
    new = ~token_own.astype(bool) & (token_targets >= 0)
    owner = report_of[new]
    n_new = np.bincount(owner, minlength=n)
    least = np.ones(n)
    np.minimum.at(least, owner, explained[new])
    covered = np.zeros((n, len(sources)))
    np.maximum.at(covered, report_of, per_token.T)
    gap = np.maximum(rendered[None, :] - covered, 0.0)[:, strong]
    left_out = covered[:, strong] < _LEFT_OUT_BELOW * rendered[None, strong]
    return {
        "new_words_foreign": np.bincount(
            owner, weights=explained[new] < _FOREIGN_BELOW, minlength=n
        ).astype(float),
        "new_words_least_explained": least,
        "new_words_explained_mean": np.where(
            n_new > 0,
            np.bincount(owner, weights=explained[new], minlength=n) / np.maximum(n_new, 1),
            1.0,
        ),
        "source_words_left_out": left_out.sum(axis=1).astype(float),
        "source_rendering_gap": gap.sum(axis=1),
        "source_words_rendered": np.full(n, float(strong.sum())),
    }
