"""Procedural multi-hop tasks over unfamiliar, executable lookup tools.

A task with h hops is a chain e0 → e1 → … → eh: tool k maps e(k-1) to ek through a lookup table. The
question names the relations ("What is the r512 of the r347 of e2718?"); each relation R has a tool get_R
whose parameter names are made up and whose key argument may carry a hidden rule (see quirks);
distractor tools answer for other relations, silently wrong. Calling a tool with no arguments is a
cheap trial: Python's own error names the parameters it takes. Every task is a pure function of (seed, split, index).
"""
from __future__ import annotations

import random
from dataclasses import asdict

from toolmaster.envs.base import Task
from toolmaster.envs.toolworld.names import code, distinct_codes
from toolmaster.envs.toolworld.quirks import NO_QUIRK, Quirk, sample_quirk
from toolmaster.tools.spec import PythonExecutor, Tool

_DESCRIPTIONS = ("Returns the {rel} of an item.", "Looks up the {rel} linked to a record.",
                 "Finds the {rel} for the given entry.")


def _tool_source(name: str, param: str, rel: str, table: dict, quirk: Quirk) -> str:
    args = param + (f", {quirk.option}" if quirk.kind == "enum" else "")  # required: a bare probe names both
    body = ["table = " + repr(table),
            "key = " + param,
            "if not isinstance(key, str):",
            f"    raise ValueError(\"{param} must be a string\")"]
    body += quirk.check_source(param)
    body += ["if key not in table:",
             "    raise ValueError(f\"no record for {key!r}\")",
             f"return {{{rel!r}: table[key]}}"]
    return f"def {name}({args}):\n" + "".join("    " + line + "\n" for line in body)


def _tool_schema(name: str, param: str, rel: str, quirk: Quirk, rng: random.Random) -> dict:
    props = {param: {"type": "string", "description": "the item"}}
    required = [param]
    if quirk.kind == "enum":
        props[quirk.option] = {"type": "string", "description": "lookup option"}
        required.append(quirk.option)
    return {"name": name, "description": rng.choice(_DESCRIPTIONS).format(rel=rel),
            "parameters": {"type": "object", "properties": props, "required": required}}


def _question(relations: list[str], start: str) -> str:
    phrase = start
    for rel in relations:
        phrase = f"the {rel} of {phrase}"
    return f"What is {phrase}?"


# A validation split for choosing among checkpoints (grpo.keep_best): its own tasks, drawn from the test
# split's names and rules, so its tools are as unseen in training as the test tools, and a choice made on it
# is not made on the tasks that are reported.
NAME_SPACE = {"val": "test"}


def generate_task(cfg, split: str, index: int) -> Task:
    rng = random.Random(f"toolworld:{cfg.seed}:{split}:{index}")
    task_split, split = split, NAME_SPACE.get(split, split)
    hops = rng.randint(cfg.min_hops, cfg.max_hops)
    n_tools = hops + cfg.distractors
    relations = distinct_codes(rng, split, "r", 3, n_tools)
    params = distinct_codes(rng, split, "p", 3, n_tools)
    entities = distinct_codes(rng, split, "e", 4, hops + 1 + n_tools * cfg.entities_per_tool)
    chain, pool = entities[: hops + 1], entities[hops + 1:]
    names = [f"get_{rel}" for rel in relations]
    tools, quirks = [], {}
    for k in range(n_tools):
        keys = rng.sample(pool, cfg.entities_per_tool - 1)
        if k < hops:
            keys.append(chain[k])
        else:  # distractors also know the chain's entities, so a wrong tool gives a wrong answer, not an error
            keys.append(rng.choice(chain[:-1]))
        keys = sorted(set(keys))
        table = {key: rng.choice(pool) for key in keys}
        if k < hops:
            table[chain[k]] = chain[k + 1]
        option = code(rng, split, "o", 3)
        quirk = sample_quirk(rng, split, cfg.quirk_rate, option, code(rng, split, "v", 2))
        if quirk.kind == "enum" and quirk.option == params[k]:
            quirk = NO_QUIRK
        source = _tool_source(names[k], params[k], relations[k], table, quirk)
        schema = _tool_schema(names[k], params[k], relations[k], quirk, rng)
        tools.append(Tool(schema, PythonExecutor(source, names[k])))
        quirks[names[k]] = asdict(quirk)
    order = list(range(n_tools))
    rng.shuffle(order)  # the needed tools are not simply listed first
    return Task(
        id=f"toolworld-{task_split}-{cfg.seed}-{index}",
        question=_question(relations[:hops], chain[0]),
        tools=tuple(tools[i] for i in order),
        reference=chain[-1],
        # the report's breakdown: hops/the first tool's rule, the axes the held-out failures follow
        # (docs/grpo.md, "What limits the gain")
        metadata={"split": task_split, "hops": hops, "group": f"{hops}-hop/{quirks[names[0]]['kind']}",
                  "chain": chain, "plan": names[:hops],
                  "params": dict(zip(names, params)), "relations": dict(zip(names, relations)), "quirks": quirks},
    )
