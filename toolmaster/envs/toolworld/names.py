"""Made-up words for toolworld, from syllable pools that are disjoint per split.

The partition is fixed (not seeded by the run), so "test names never appear in training" holds for every
seed: train, test and test_ood draw tool names, parameter names, relation words and entities from
disjoint syllable sets.
"""
from __future__ import annotations

import random

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_ALL = [c + v for c in _CONSONANTS for v in _VOWELS]  # 70 CV syllables
_order = random.Random("toolworld-syllables-v1").sample(_ALL, len(_ALL))
SYLLABLES = {"train": _order[:30], "test": _order[30:50], "test_ood": _order[50:]}


def word(rng: random.Random, split: str, syllables: int) -> str:
    pool = SYLLABLES[split]
    return "".join(rng.choice(pool) for _ in range(syllables))


def distinct_words(rng: random.Random, split: str, count: int, syllables: int, avoid: set | None = None) -> list[str]:
    seen = set(avoid or ())
    out = []
    while len(out) < count:
        w = word(rng, split, syllables)
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out
