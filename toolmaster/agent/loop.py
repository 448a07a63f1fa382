"""The agent loop: render → generate → parse → execute tools → observe, until an answer or the turn limit.

Episodes advance in lockstep so a policy can batch one turn of many episodes. Everything the model
writes is handled here without raising: parse errors and failed calls become tool observations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from toolmaster.agent.episode import Episode
from toolmaster.envs.base import Environment, Task
from toolmaster.protocol import EpisodeStats, build_messages, parse_turn
from toolmaster.rewards import score_episode
from toolmaster.tools.base import ToolResult, ToolRunner

NOTE_ACK = "noted; continue with tool calls, or give the final answer inside <answer></answer>"


@dataclass
class TurnRequest:
    episode_id: str
    messages: list[dict]
    task: Task


class Policy(Protocol):
    def generate(self, requests: list[TurnRequest]) -> list[str]:
        """One assistant turn for each request."""


def take_turn(episode: Episode, task: Task, text: str, runner: ToolRunner, tracker: EpisodeStats) -> None:
    """Apply one assistant turn to an episode: parse it, run its calls, append the observations."""
    parsed = parse_turn(text, task.schemas)
    episode.messages.append({"role": "assistant", "content": text})
    tracker.record_turn(parsed.experience is not None, len(parsed.errors))
    observations = []
    for item in parsed.items:
        if hasattr(item, "arguments"):
            result = runner.run(task.tool(item.name), item.arguments)
            tracker.record_call(item.name, result.ok)
        else:  # a call that could not be read: the agent sees why
            result = ToolResult(False, item.render())
            if item.tool is not None:
                tracker.record_call(item.tool, False)
        observations.append(result.content)
    if parsed.answer is not None:
        episode.answer = parsed.answer
        episode.finish_reason = "answer"
        return
    observations += [e.render() for e in parsed.turn_errors]
    if not observations:  # an experience note alone
        observations.append(NOTE_ACK)
    for content in observations:
        episode.messages.append({"role": "tool", "content": content})
    episode.last_observation = observations[-1]


def run_episodes(policy: Policy, tasks: list[Task], env: Environment, runner: ToolRunner, *, max_turns: int,
                 trial: bool = True, reward_weights=None, episode_ids: list[str] | None = None,
                 on_turn: Callable[[int, int], None] | None = None) -> list[Episode]:
    episodes = [Episode(episode_id=(episode_ids[i] if episode_ids else f"{t.id}#{i}"), task_id=t.id,
                        messages=build_messages(t.question, trial), tools=t.schemas) for i, t in enumerate(tasks)]
    trackers = [EpisodeStats() for _ in tasks]
    for turn in range(max_turns):
        active = [i for i, ep in enumerate(episodes) if not ep.done]
        if not active:
            break
        texts = policy.generate([TurnRequest(episodes[i].episode_id, episodes[i].messages, tasks[i]) for i in active])
        for i, text in zip(active, texts):
            if text is None:  # the policy cannot continue (the conversation outgrew its context)
                episodes[i].finish_reason = "context_limit"
                continue
            take_turn(episodes[i], tasks[i], text, runner, trackers[i])
        if on_turn:
            on_turn(turn + 1, len(active))
    for ep, task, tracker in zip(episodes, tasks, trackers):
        if not ep.done:
            ep.finish_reason = "max_turns"
        ep.stats = tracker.summary()
        ep.correct = env.is_correct(task, ep.final_message, ep.answer, ep.last_observation)
        ep.rewards = score_episode(ep, reward_weights)
    return episodes
