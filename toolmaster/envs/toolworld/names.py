"""Made-up names for toolworld: a letter that says what kind of name it is, then digits.

Digits are single tokens for every Qwen2-style tokenizer (its pre-tokenizer splits numbers into digits),
so a name tokenizes the same way in the question, a tool schema, an error message or an argument, and a
model can copy it token for token. The splits stay disjoint by a fixed partition on the digit sum
(mod 3), so no name of the test splits ever appears in training, for every seed, while every digit is
equally likely at every position in every split (a partition by leading digit taught a model that
"e" is followed by 1–5, and it then mis-copied the test names).
"""
from __future__ import annotations

import random

SPLIT_RESIDUE = {"train": 0, "test": 1, "test_ood": 2}
DIGITS = "0123456789"


def split_of(name: str) -> str:
    residue = sum(int(c) for c in name if c.isdigit()) % 3
    return next(s for s, r in SPLIT_RESIDUE.items() if r == residue)


def code(rng: random.Random, split: str, letter: str, digits: int) -> str:
    while True:
        name = letter + "".join(rng.choice(DIGITS) for _ in range(digits))
        if split_of(name) == split:
            return name


def distinct_codes(rng: random.Random, split: str, letter: str, digits: int, count: int) -> list[str]:
    seen: set[str] = set()
    out = []
    while len(out) < count:
        name = code(rng, split, letter, digits)
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out
