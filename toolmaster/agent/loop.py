"""The agent loop: render → generate → parse → execute tools → observe, until an answer or the turn limit.

Each episode is a coroutine; many run at once against one policy (an async vLLM engine batches their
turns). Everything the model writes is handled here without raising: parse errors and failed calls
become tool observations. An exception from anything else (the policy, a tool runner or client, the
grader or a judge) ends only its own episode: finish reason ``error``, ``Episode.error`` naming the stage.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from toolmaster.agent.episode import Episode
from toolmaster.envs.base import Environment, Task
from toolmaster.protocol import EpisodeStats, build_messages, parse_turn
from toolmaster.tools.base import FinishExecutor, ToolResult, ToolRunner

NOTE_ACK = "noted; continue with tool calls, or give the final answer inside <answer></answer>"


@dataclass
class TurnRequest:
    episode_id: str
    messages: list[dict]
    task: Task


class Policy(Protocol):
    """A batch policy; an async engine instead has ``async respond(request) -> str | None``."""

    def generate(self, requests: list[TurnRequest]) -> list[str | None]:
        """One assistant turn for each request."""


async def take_turn(episode: Episode, task: Task, text: str, runner: ToolRunner, tracker: EpisodeStats) -> None:
    """Apply one assistant turn to an episode: parse it, run its calls (awaited, in order), append the
    observations."""
    parsed = parse_turn(text, task.schemas)
    episode.messages.append({"role": "assistant", "content": text})
    tracker.record_turn(parsed.experience is not None, len(parsed.format_errors))
    observations = []
    for item in parsed.items:
        if hasattr(item, "arguments"):
            tool = task.tool(item.name)
            episode.calls.append(item.name)
            if isinstance(tool.executor, FinishExecutor):  # StableToolBench's convention ends the episode
                _finish(episode, item.arguments)
                return
            result = await runner.arun(tool, item.arguments)
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


def _finish(episode: Episode, arguments: dict) -> None:
    if arguments.get("return_type") == "give_answer":
        episode.answer = str(arguments.get("final_answer", ""))
        episode.finish_reason = "answer"
    else:
        episode.finish_reason = "give_up"


async def _respond(policy, request: TurnRequest) -> str | None:
    if hasattr(policy, "respond"):  # an async engine: episodes interleave while it generates
        return await policy.respond(request)
    return policy.generate([request])[0]


async def run_episode(policy, task: Task, env: Environment, runner: ToolRunner, *, episode_id: str, max_turns: int,
                      trial: bool = True, reward_weights=None, system_prompt: str | None = None) -> Episode:
    """One episode to its end. Tool calls are awaited (``runner.arun``), so concurrent episodes overlap them;
    ``timings["tools"]`` is every second from a parsed turn to its observations, queueing for a sandbox
    template, an HTTP connection or an environment actor included."""
    episode = Episode(episode_id=episode_id, task_id=task.id, tools=task.schemas,
                      messages=build_messages(task.question, trial, system_prompt))
    tracker = EpisodeStats()
    timings = {"tools": 0.0, "score": 0.0}
    stage = "policy"
    try:
        for _ in range(max_turns):
            stage = "policy"
            text = await _respond(policy, TurnRequest(episode_id, episode.messages, task))
            if text is None:  # the policy cannot continue (the conversation outgrew its context)
                episode.finish_reason = "context_limit"
                break
            stage, start = "tool", time.perf_counter()
            await take_turn(episode, task, text, runner, tracker)
            timings["tools"] += time.perf_counter() - start
            if episode.done:
                break
        if not episode.done:
            episode.finish_reason = "max_turns"
        episode.stats = tracker.summary()
        stage, start = "grader", time.perf_counter()
        episode.grade, episode.judgments, episode.rewards = await runner.ascore(env, task, episode, reward_weights)
        timings["score"] = time.perf_counter() - start
        episode.correct = episode.grade is not None and episode.grade >= 1.0
    except Exception as err:  # noqa: BLE001 — the episode records it; the step goes on
        episode.finish_reason, episode.correct, episode.grade = "error", False, None
        episode.stats = tracker.summary()
        episode.rewards = {"total": 0.0}
        episode.error = {"kind": f"{stage}_error", "message": f"{type(err).__name__}: {err}"[:2000]}
    episode.timings = timings
    return episode


def run_episodes(policy, tasks: list[Task], env: Environment, runner: ToolRunner, *, max_turns: int,
                 trial: bool = True, reward_weights=None, episode_ids: list[str] | None = None,
                 on_episode: Callable[[Episode], None] | None = None,
                 system_prompt: str | None = None) -> list[Episode]:
    """Run all episodes concurrently (from synchronous code) and return them in task order."""

    async def one(i: int, task: Task) -> Episode:
        episode_id = episode_ids[i] if episode_ids else f"{task.id}#{i}"
        ep = await run_episode(policy, task, env, runner, episode_id=episode_id, max_turns=max_turns, trial=trial,
                               reward_weights=reward_weights, system_prompt=system_prompt)
        if on_episode:
            on_episode(ep)
        return ep

    async def main() -> list[Episode]:
        from toolmaster.tools.base import close_async_clients

        try:
            return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(tasks))))
        finally:
            await close_async_clients()

    return asyncio.run(main())
