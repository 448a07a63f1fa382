"""One episode of a custom agent (envs/agent.py) on a rollout worker: the agent function talks to the
worker's recording endpoint; its return value is the reward; its trajectory is what the endpoint recorded."""
from __future__ import annotations

import asyncio
import time

from toolmaster.agent.episode import Episode
from toolmaster.envs.agent import agent_result
from toolmaster.protocol import EpisodeStats


async def run_custom_episode(endpoint, env, task, episode_id: str, generation=None,
                             client_sampling: bool = True) -> tuple[Episode, list]:
    """The episode (reward, correctness, turns; ``error`` when the agent raised or timed out) and the
    trajectories of its conversation (one, or several where the client broke the prefix). Without
    ``client_sampling`` (training) the agent's requests sample with ``generation`` whatever they ask."""
    from openai import AsyncOpenAI

    if endpoint.port is None:
        await endpoint.start()
    if generation is not None:
        endpoint.base_generation[episode_id] = generation
    if not client_sampling:
        endpoint.fixed_sampling.add(episode_id)
    episode = Episode(episode_id=episode_id, task_id=task.id, messages=[], tools=[])
    client = AsyncOpenAI(base_url=endpoint.base_url(episode_id), api_key="toolmaster", max_retries=0,
                         timeout=env.cfg.timeout_s)
    start = time.perf_counter()
    try:
        value = await asyncio.wait_for(env.agent(dict(task.metadata["task"]), client, endpoint.model_name),
                                       env.cfg.timeout_s)
        reward, episode.correct, metrics = agent_result(value)
        episode.grade = 1.0 if episode.correct else 0.0
        episode.rewards = {"correctness": reward, "total": reward}
        episode.judgments = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        episode.finish_reason = "answer"
    except Exception as err:  # noqa: BLE001 — the episode records it; the step goes on
        episode.finish_reason, episode.correct = "error", False
        episode.rewards = {"total": 0.0}
        episode.error = {"kind": "agent_error", "message": f"{type(err).__name__}: {err}"[:2000]}
    finally:
        await client.close()
    segments, session = endpoint.close_session(episode_id)
    endpoint.base_generation.pop(episode_id, None)
    endpoint.fixed_sampling.discard(episode_id)
    episode.messages = session.last_messages
    episode.stats = {**EpisodeStats().summary(), "turns": session.requests}
    episode.timings = {"tools": 0.0, "score": 0.0, "agent": time.perf_counter() - start}
    return episode, segments
