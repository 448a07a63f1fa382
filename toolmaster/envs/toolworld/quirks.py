"""Hidden argument rules ("quirks") of toolworld tools.

Each kind knows how to encode a value correctly, how to get it wrong the way a newcomer would, the
Python check that the tool runs (with an informative error), and the sentence an agent would write in its
experience note after a trial. Kinds and their parameters are split-specific: test tools reuse the
in-domain kinds with new parameters; test_ood uses kinds never seen in training.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from toolmaster.envs.toolworld.names import code

IN_DOMAIN_KINDS = ("prefix", "suffix", "enum")
OOD_KINDS = ("wrap", "upper")
PROBE_OPTION = "default"  # what a newcomer puts in an option it knows nothing about


@dataclass(frozen=True)
class Quirk:
    kind: str
    value: str = ""  # prefix / suffix text, or the one accepted option value
    option: str = ""  # name of the extra option parameter (enum kind)

    def encode(self, entity: str) -> tuple[str, dict]:
        """The correct key argument, and any extra arguments."""
        if self.kind == "prefix":
            return self.value + entity, {}
        if self.kind == "suffix":
            return entity + self.value, {}
        if self.kind == "enum":
            return entity, {self.option: self.value}
        if self.kind == "wrap":
            return f"[{entity}]", {}
        if self.kind == "upper":
            return entity.upper(), {}
        return entity, {}

    def naive(self, entity: str) -> tuple[str, dict]:
        """What a call looks like when the rule is not known."""
        return entity, ({self.option: PROBE_OPTION} if self.kind == "enum" else {})

    def check_source(self, param: str) -> list[str]:
        """Lines of the tool body: validate ``key`` and turn it into the table key."""
        v = repr(self.value)
        if self.kind == "prefix":
            return [f"if not key.startswith({v}):",
                    f"    raise ValueError(f\"bad {param} {{key!r}}: expected the form '{self.value}<name>'\")",
                    f"key = key[{len(self.value)}:]"]
        if self.kind == "suffix":
            return [f"if not key.endswith({v}):",
                    f"    raise ValueError(f\"bad {param} {{key!r}}: expected the form '<name>{self.value}'\")",
                    f"key = key[:-{len(self.value)}]"]
        if self.kind == "enum":
            return [f"if {self.option} != {v}:",
                    f"    raise ValueError(f\"unsupported {self.option} {{{self.option}!r}}; "
                    f"supported: '{self.value}'\")"]
        if self.kind == "wrap":
            return ["if not (key.startswith('[') and key.endswith(']')):",
                    f"    raise ValueError(f\"bad {param} {{key!r}}: the value must be wrapped in square brackets\")",
                    "key = key[1:-1]"]
        if self.kind == "upper":
            return ["if key != key.upper():",
                    f"    raise ValueError(f\"bad {param} {{key!r}}: the value must be upper-case\")",
                    "key = key.lower()"]
        return []

    def describe(self, tool: str, param: str) -> str:
        if self.kind == "prefix":
            return f"{tool}: {param} needs the prefix '{self.value}'."
        if self.kind == "suffix":
            return f"{tool}: {param} needs the suffix '{self.value}'."
        if self.kind == "enum":
            return f"{tool}: {self.option} must be '{self.value}'."
        if self.kind == "wrap":
            return f"{tool}: {param} must be wrapped in square brackets."
        if self.kind == "upper":
            return f"{tool}: {param} must be upper-case."
        return f"{tool}: {param} takes the plain value."


NO_QUIRK = Quirk("none")


def sample_quirk(rng: random.Random, split: str, rate: float, option_word: str, option_value: str) -> Quirk:
    if rng.random() >= rate:
        return NO_QUIRK
    kinds = OOD_KINDS if split == "test_ood" else IN_DOMAIN_KINDS
    kind = rng.choice(kinds)
    # coded like names (letter + digits, split-disjoint), so the value an error reveals can be copied
    if kind == "prefix":
        return Quirk("prefix", code(rng, split, "k", 2) + "-")
    if kind == "suffix":
        return Quirk("suffix", "-" + code(rng, split, "s", 2))
    if kind == "enum":
        return Quirk("enum", option_value, option_word)
    return Quirk(kind)
