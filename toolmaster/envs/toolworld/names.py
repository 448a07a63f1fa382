"""Made-up names for toolworld: a letter that says what kind of name it is, then digits.

Digits are single tokens for every Qwen2-style tokenizer (its pre-tokenizer splits numbers into digits),
so a name tokenizes the same way in the question, a tool schema, an error message or an argument, and a
model can copy it token for token. The splits stay disjoint by a fixed partition of the *leading* digit:
no name of the test splits ever appears in training, for every seed.
"""
from __future__ import annotations

import random

LEADING_DIGITS = {"train": "12345", "test": "678", "test_ood": "90"}
DIGITS = "0123456789"


def code(rng: random.Random, split: str, letter: str, digits: int) -> str:
    return letter + rng.choice(LEADING_DIGITS[split]) + "".join(rng.choice(DIGITS) for _ in range(digits - 1))


def distinct_codes(rng: random.Random, split: str, letter: str, digits: int, count: int) -> list[str]:
    seen: set[str] = set()
    out = []
    while len(out) < count:
        name = code(rng, split, letter, digits)
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out
