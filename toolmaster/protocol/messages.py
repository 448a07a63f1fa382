"""Conversation construction: the system prompt that asks for trial → experience → execution → answer."""
from __future__ import annotations

TRIAL_PROMPT = (
    "You solve tasks with tools you have never used. Their documentation may be incomplete.\n"
    "1. Trial: call the tools you need with probe inputs and read what they return or which error they give.\n"
    "2. Write what you learned inside <experience></experience>.\n"
    "3. Execute: solve the task with tool calls. If a call fails, fix it from the error message and call again.\n"
    "4. Give the final answer inside <answer></answer>."
)
DIRECT_PROMPT = (
    "You solve tasks with tools you have never used. Their documentation may be incomplete.\n"
    "Solve the task with tool calls. If a call fails, fix it from the error message and call again.\n"
    "Give the final answer inside <answer></answer>."
)


def system_prompt(trial: bool = True) -> str:
    return TRIAL_PROMPT if trial else DIRECT_PROMPT


def build_messages(question: str, trial: bool = True, system: str | None = None) -> list[dict]:
    """The opening of an episode: ``system`` (env.system_prompt) replaces the built-in instructions."""
    return [{"role": "system", "content": system or system_prompt(trial)}, {"role": "user", "content": question}]
