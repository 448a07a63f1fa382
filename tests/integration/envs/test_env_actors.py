"""ToolEnv actors: tools run in restartable Ray actors; a call whose actor died is retried."""
import os
import signal

import pytest
import ray

from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.envs.actor import RemoteToolRunner, start_env_actors
from toolmaster.models.tiny import TINY_SETTINGS as TINY


@pytest.fixture
def cfg_and_actors(ray_local):
    """One ToolEnv actor, removed for good after the test (Ray would otherwise restart it)."""
    cfg = build_config(TINY, ["env_actors.num_actors=1"])
    actors = start_env_actors(cfg)
    yield cfg, actors
    for a in actors:
        ray.kill(a, no_restart=True)


def test_call_survives_a_killed_env_actor(cfg_and_actors):
    cfg, actors = cfg_and_actors
    runner = RemoteToolRunner(actors)
    task = make_env(cfg.env).tasks("train", 1)[0]
    tool = task.tool(task.metadata["plan"][0])
    param = task.metadata["params"][tool.name]
    first = runner.run(tool, {param: "probe"})
    assert first.content.startswith("error:")  # the tool's own error, from the actor
    old_pid = ray.get(actors[0].pid.remote())
    os.kill(old_pid, signal.SIGKILL)  # the actor's process dies between calls
    again = runner.run(tool, {param: "probe"})
    assert again.content == first.content
    assert ray.get(actors[0].pid.remote()) != old_pid  # Ray restarted it


def test_call_in_flight_when_its_actor_dies_is_retried(cfg_and_actors):
    import threading
    import time

    from toolmaster.tools.base import PythonExecutor, Tool

    cfg, actors = cfg_and_actors
    slow = Tool({"name": "slow", "description": "", "parameters": {"type": "object", "properties": {}}},
                PythonExecutor("import time\ndef slow():\n    time.sleep(2)\n    return 'done'\n", "slow"))
    pid = ray.get(actors[0].pid.remote())
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=RemoteToolRunner(actors).run(slow, {})))
    thread.start()
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)  # dies while running the call
    thread.join(timeout=120)
    assert result["r"].ok and result["r"].content == "done"


def test_episodes_are_scored_on_env_actors(cfg_and_actors):
    from toolmaster.agent.loop import run_episodes
    from toolmaster.agent.policies import OraclePolicy

    cfg, actors = cfg_and_actors
    env = make_env(cfg.env)
    tasks = env.tasks("test", 3)
    runner = RemoteToolRunner(actors, cfg.env.model_dump())
    episodes = run_episodes(OraclePolicy(), tasks, env, runner, max_turns=2, reward_weights=cfg.rewards)
    assert all(ep.correct and ep.rewards["correctness"] == 1.0 for ep in episodes)
    assert all(ep.timings["score"] > 0 for ep in episodes)
    with_wrong = run_episodes(type("Wrong", (), {"generate": lambda self, reqs: ["<answer>no</answer>"] * len(reqs)})(),
                              tasks, env, runner, max_turns=2, reward_weights=cfg.rewards)
    assert not any(ep.correct for ep in with_wrong)


def test_episode_completes_when_its_env_actor_is_killed_mid_episode(cfg_and_actors):
    from toolmaster.agent.loop import run_episodes
    from toolmaster.teacher.scripted import ScriptedTeacher

    cfg, actors = cfg_and_actors
    env = make_env(cfg.env)
    task = next(t for t in env.tasks("train", 20) if t.metadata["hops"] == 2)
    teacher = ScriptedTeacher(trial=True, mistake_rate=0.0)
    pids = []

    class KillsOnThirdTurn:
        """The teacher, but before its third turn the actor that runs the tools is SIGKILLed."""

        def generate(self, requests):
            if sum(m["role"] == "assistant" for m in requests[0].messages) == 2:
                pids.append(ray.get(actors[0].pid.remote()))
                os.kill(pids[-1], signal.SIGKILL)
            return teacher.generate(requests)

    runner = RemoteToolRunner(actors, cfg.env.model_dump())
    episode = run_episodes(KillsOnThirdTurn(), [task], env, runner, max_turns=cfg.env.max_turns,
                           reward_weights=cfg.rewards)[0]
    assert pids and ray.get(actors[0].pid.remote()) != pids[0]  # the actor was killed and restarted
    assert episode.finish_reason == "answer" and episode.correct  # the episode still completed, correctly
