"""ToolEnv actors: tools run in restartable Ray actors; a call whose actor died is retried."""
import os
import signal

import pytest
import ray

from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.envs.actor import RemoteToolRunner, start_env_actors


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_call_survives_a_killed_env_actor(ray_local):
    cfg = build_config({}, ["env_actors.num_actors=1"])
    actors = start_env_actors(cfg)
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
    for a in actors:
        ray.kill(a, no_restart=True)


def test_call_in_flight_when_its_actor_dies_is_retried(ray_local):
    import threading
    import time

    from toolmaster.tools.base import PythonExecutor, Tool

    cfg = build_config({}, ["env_actors.num_actors=1"])
    actors = start_env_actors(cfg)
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
    for a in actors:
        ray.kill(a, no_restart=True)
