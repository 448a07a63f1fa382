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


def teacher_script(task, rng: random.Random, trial: bool, mistake_rate: float, probe_distractors: bool,
                   trial_order: str = "upfront"):
    """A generator of assistant turns; each ``send`` gives it the observations of its previous turn.

    With trials, each tool of the plan is tried — called bare (its error names the parameters) and then
    with the plain value (its error, if any, shows the hidden rule) — and the lesson goes into an
    experience note before the tool is used for real: all tools first and one note (``trial_order``
    "upfront", see ``_upfront_script``), or trial, note and use per tool ("per_tool"). ``probe_distractors`` also tries the tools the
    plan does not need. Without trials the agent calls each tool from its schema and corrects itself from
    the error. ``mistake_rate`` is the chance of a slip (the plain value again) after a note.
    """
    meta = task.metadata
    entity = meta["chain"][0]
    note = ""  # an experience note waiting to open the next turn
    if trial and probe_distractors:
        for tool in (t.name for t in task.tools if t.name not in meta["plan"]):
            yield call_text(tool, {})
    if trial and trial_order == "upfront":
        yield from _upfront_script(task, rng, mistake_rate)
        return
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
    result (README, "Trial phase first")."""
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

    def __init__(self, seed: int = 0, trial: bool = True, mistake_rate: float = 0.3, probe_distractors: bool = False,
                 trial_order: str = "upfront"):
        self.seed, self.trial, self.mistake_rate, self.probe_distractors = seed, trial, mistake_rate, probe_distractors
        self.trial_order = trial_order
        self._scripts: dict = {}

    def generate(self, requests) -> list[str]:
        out = []
        for req in requests:
            script = self._scripts.get(req.episode_id)
            if script is None:
                rng = random.Random(f"teacher:{self.seed}:{req.episode_id}")
                script = self._scripts[req.episode_id] = teacher_script(
                    req.task, rng, self.trial, self.mistake_rate, self.probe_distractors, self.trial_order)
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
