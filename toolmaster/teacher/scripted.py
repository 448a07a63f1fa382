"""A scripted toolworld teacher: trial → experience → execution with injected mistakes → answer.

It is a Policy: it plays its episodes through the real agent loop and tools, so every observation in a
trajectory is what the tool really returned. It knows each task's plan and quirks from the task metadata
and reads hop results from the observations it gets back.
"""
from __future__ import annotations

import json
import random

from toolmaster.envs.toolworld.quirks import Quirk


def call_text(name: str, arguments: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def _call(task, tool: str, entity: str, correct: bool) -> str:
    quirk = Quirk(**task.metadata["quirks"][tool])
    key, extra = quirk.encode(entity) if correct else quirk.naive(entity)
    return call_text(tool, {task.metadata["params"][tool]: key, **extra})


def _read_value(observation: str | None, relation: str) -> str | None:
    try:
        return json.loads(observation)[relation]
    except (TypeError, ValueError, KeyError):
        return None


def teacher_script(task, rng: random.Random, trial: bool, mistake_rate: float, probe_distractors: bool):
    """A generator of assistant turns; each ``send`` gives it the observations of its previous turn.

    With trials, the trial phase comes first (``_upfront_script``): each tool of the plan is tried — called
    bare (its error names the parameters) and then with the plain value (its error, if any, shows the hidden
    rule) — then one experience note holds every lesson and the chain is executed. ``probe_distractors``
    also tries the tools the plan does not need. Without trials the agent calls each tool from its schema
    and corrects itself from the error. ``mistake_rate`` is the chance of a slip (the plain value again)
    after a note.
    """
    if trial and probe_distractors:
        for tool in (t.name for t in task.tools if t.name not in task.metadata["plan"]):
            yield call_text(tool, {})
    if trial:
        yield from _upfront_script(task, rng, mistake_rate)
    else:
        yield from _per_tool_script(task, rng, trial=False, mistake_rate=mistake_rate)


def _per_tool_script(task, rng: random.Random, trial: bool, mistake_rate: float):
    """Each tool in turn: with ``trial`` tried (bare, then the plain value), noted and used; without, called
    from its schema and corrected from the error. With trials this is the former synthesis order, kept only
    for the tiny model's tokenizer corpus (``_PerToolTeacher``): SFT data trials up front."""
    meta = task.metadata
    entity = meta["chain"][0]
    note = ""  # an experience note waiting to open the next turn
    for tool in meta["plan"]:
        quirk = Quirk(**meta["quirks"][tool])
        if trial:
            yield note + call_text(tool, {})
            observations = yield _call(task, tool, entity, correct=False)
            note = f"<experience>{quirk.describe(tool, meta['params'][tool])}</experience>\n"
            if quirk.kind != "none":  # the plain call failed: use the tool for real, by the lesson
                if rng.random() < mistake_rate:
                    yield note + _call(task, tool, entity, correct=False)
                    note = ""
                observations = yield note + _call(task, tool, entity, correct=True)
                note = ""
        else:
            for correct in ([False, True] if quirk.kind != "none" else [True]):
                observations = yield _call(task, tool, entity, correct)
        value = _read_value(observations[-1] if observations else None, meta["relations"][tool])
        entity = value if value is not None else entity
    yield f"{note}<answer>{entity}</answer>"


def _upfront_script(task, rng: random.Random, mistake_rate: float):
    """Trial phase, then execution phase: each plan tool called bare and with the plain start entity, one
    note with every lesson, then the chain executed. Why this is the default: a tiny model's choice of the
    next tool fades with its distance from the question; here each choice sits right after the previous
    tool's two trial calls, or right under the note that names it, not after a whole hop of trial, use and
    result (docs/grpo.md, "Trial phase first")."""
    meta = task.metadata
    start = meta["chain"][0]
    quirks = {tool: Quirk(**meta["quirks"][tool]) for tool in meta["plan"]}
    for tool in meta["plan"]:
        yield call_text(tool, {})
        yield _call(task, tool, start, correct=False)
    note = "<experience>" + " ".join(quirks[tool].describe(tool, meta["params"][tool]) for tool in meta["plan"])
    note += "</experience>\n"
    entity = start
    for tool in meta["plan"]:
        if quirks[tool].kind != "none" and rng.random() < mistake_rate:
            yield note + _call(task, tool, entity, correct=False)
            note = ""
        observations = yield note + _call(task, tool, entity, correct=True)
        note = ""
        value = _read_value(observations[-1] if observations else None, meta["relations"][tool])
        entity = value if value is not None else entity
    yield f"<answer>{entity}</answer>"


class ScriptedTeacher:
    """Policy over toolworld tasks; one script per episode id."""

    def __init__(self, seed: int = 0, trial: bool = True, mistake_rate: float = 0.3, probe_distractors: bool = False):
        self.seed, self.trial, self.mistake_rate, self.probe_distractors = seed, trial, mistake_rate, probe_distractors
        self._scripts: dict = {}

    def _script(self, task, rng: random.Random):
        return teacher_script(task, rng, self.trial, self.mistake_rate, self.probe_distractors)

    def generate(self, requests) -> list[str]:
        out = []
        for req in requests:
            script = self._scripts.get(req.episode_id)
            if script is None:
                rng = random.Random(f"teacher:{self.seed}:{req.episode_id}")
                script = self._scripts[req.episode_id] = self._script(req.task, rng)
                text = next(script)
            else:
                tail = []
                for msg in reversed(req.messages):
                    if msg["role"] != "tool":
                        break
                    tail.append(msg["content"])
                try:
                    text = script.send(list(reversed(tail)))
                except StopIteration:
                    text = "<answer></answer>"
            out.append(text)
        return out


class _PerToolTeacher(ScriptedTeacher):
    """The tiny model's corpus teacher (models.tiny.protocol_corpus): trial, note and use each tool in turn.

    Not a synthesis option: the base model's tokenizer and copy pre-training are built from this text, and
    any change to it re-rolls the whole build, so it keeps the order it was built with."""

    def _script(self, task, rng: random.Random):
        return _per_tool_script(task, rng, self.trial, self.mistake_rate)
