"""The tool path is async end to end: concurrent calls overlap (the sandbox pool's templates, the pooled
tool-server client, environment actors), queueing counts in an episode's tool time, a dead actor's call
is retried, and a cancelled sandbox call does not poison the next one."""
import asyncio
import json
import threading
import time

import pytest
from fastapi import FastAPI

from toolmaster.tools.base import PythonExecutor, Tool, ToolResult, ToolRunner, VirtualApiExecutor
from toolmaster.tools.sandbox import SandboxPool

SLEEPS = "import time\ndef nap(s):\n    time.sleep(s)\n    return 'rested'\n"
NAP = Tool({"name": "nap", "description": "", "parameters": {"type": "object", "properties": {
    "s": {"type": "number"}}, "required": ["s"]}}, PythonExecutor(SLEEPS, "nap"))


async def _timed(*calls) -> tuple[list, float]:
    start = time.perf_counter()
    results = await asyncio.gather(*calls)
    return results, time.perf_counter() - start


def test_sandbox_serves_concurrent_calls_at_once():
    """8 calls to a 0.2 s tool on 8 templates take ≈ 0.2 s, not 1.6 s; on 2 templates they queue (4 rounds)."""
    async def main():
        with SandboxPool(workers=8, timeout_s=5) as pool:  # every isolation layer the kernel allows
            await asyncio.gather(*(pool.acall(SLEEPS, "nap", {"s": 0.0}) for _ in range(8)))  # templates started
            results, wide = await _timed(*(pool.acall(SLEEPS, "nap", {"s": 0.2}) for _ in range(8)))
        assert all(r.ok and r.content == "rested" for r in results)
        with SandboxPool(workers=2, timeout_s=5, isolate=False) as pool:
            await asyncio.gather(*(pool.acall(SLEEPS, "nap", {"s": 0.0}) for _ in range(2)))
            results, narrow = await _timed(*(pool.acall(SLEEPS, "nap", {"s": 0.2}) for _ in range(8)))
        assert all(r.ok for r in results)
        return wide, narrow

    wide, narrow = asyncio.run(main())
    assert wide < 0.6, wide  # 8 × 0.2 s = 1.6 s if served one at a time
    assert narrow >= 0.8, narrow  # 2 at a time: 4 rounds


def test_sandbox_blocking_and_awaited_calls_share_the_templates():
    pool = SandboxPool(workers=2, timeout_s=5, isolate=False)
    results = {}
    try:
        threads = [threading.Thread(target=lambda i=i: results.update({i: pool.call(SLEEPS, "nap", {"s": 0.1})}))
                   for i in range(4)]
        for t in threads:
            t.start()

        async def awaited():
            return await asyncio.gather(*(pool.acall(SLEEPS, "nap", {"s": 0.1}) for _ in range(4)))

        awaited_results = asyncio.run(awaited())
        for t in threads:
            t.join(30)
        assert all(r.ok for r in awaited_results) and all(r.ok for r in results.values()) and len(results) == 4
        assert pool._started <= 2
    finally:
        pool.close()


def test_a_cancelled_sandbox_call_kills_its_template_and_the_next_call_is_clean():
    async def main():
        with SandboxPool(workers=1, timeout_s=5, isolate=False) as pool:
            slow = asyncio.ensure_future(pool.acall(SLEEPS, "nap", {"s": 2}))
            queued = asyncio.ensure_future(pool.acall(SLEEPS, "nap", {"s": 0}))
            await asyncio.sleep(0.3)
            slow.cancel()
            queued_cancelled = asyncio.ensure_future(pool.acall(SLEEPS, "nap", {"s": 0}))
            await asyncio.sleep(0)
            queued_cancelled.cancel()
            after = await asyncio.wait_for(queued, 10)
            again = await pool.acall("def f():\n    return 'own'\n", "f", {})
            return after, again, pool._started

    after, again, started = asyncio.run(main())
    assert after.ok and after.content == "rested"  # not the cancelled call's reply
    assert again.content == "own" and started == 1


class _SleepServer:
    """A StableToolBench-compatible tool server whose every call sleeps ``delay`` seconds."""

    def __init__(self, delay: float):
        import uvicorn

        from toolmaster.toolserver.process import free_port

        app = FastAPI()
        self.in_flight = self.peak = 0

        @app.post("/virtual")
        async def virtual(body: dict) -> dict:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            await asyncio.sleep(delay)
            self.in_flight -= 1
            return {"error": "", "response": json.dumps({"echo": body["tool_input"]})}

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.02)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def _virtual_tool(url: str, max_connections: int = 256) -> Tool:
    return Tool({"name": "lookup", "description": "", "parameters": {"type": "object", "properties": {}}},
                VirtualApiExecutor(url, "Data", "t", "lookup", timeout_s=10, max_connections=max_connections))


def test_tool_server_calls_overlap_on_the_pooled_client_up_to_its_limit():
    server = _SleepServer(0.2)
    runner = ToolRunner(SandboxPool(workers=1))
    try:
        async def main(tool, n):
            from toolmaster.tools.base import close_async_clients

            await runner.arun(tool, {"q": -1})  # the connection pool is warm
            try:
                return await _timed(*(runner.arun(tool, {"q": i}) for i in range(n)))
            finally:
                await close_async_clients()

        results, wide = asyncio.run(main(_virtual_tool(server.url), 32))
        assert all(r.ok for r in results)
        assert json.loads(json.loads(results[5].content)["response"])["echo"] == '{"q": 5}'
        assert wide < 0.8 and server.peak >= 30, (wide, server.peak)  # 32 × 0.2 s = 6.4 s one at a time
        _, capped = asyncio.run(main(_virtual_tool(server.url, max_connections=4), 16))
        assert capped >= 0.75, capped  # 4 connections: 4 rounds
    finally:
        server.close()


class _FakeRemoteMethod:
    def __init__(self, actor, name):
        self.actor, self.name = actor, name

    def remote(self, *args):
        return self.actor.call(self.name, *args)


class _FakeActor:
    """An async actor's handle: ``actor.run.remote(...)`` is awaitable; it may die on its next calls."""

    def __init__(self, delay: float, deaths: int = 0):
        self.delay, self.deaths, self.calls, self.in_flight, self.peak = delay, deaths, 0, 0, 0
        self.run = _FakeRemoteMethod(self, "run")

    async def call(self, name, tool, arguments):
        from ray.exceptions import ActorDiedError

        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.deaths:
                self.deaths -= 1
                raise ActorDiedError()
            return ToolResult(True, f"{tool.name}:{arguments}")
        finally:
            self.in_flight -= 1


def test_env_actor_calls_are_awaited_concurrently_and_spread():
    from toolmaster.envs.actor import RemoteToolRunner

    actors = [_FakeActor(0.2) for _ in range(3)]
    runner = RemoteToolRunner(actors)
    results, seconds = asyncio.run(_timed(*(runner.arun(NAP, {"s": i}) for i in range(30))))
    assert [r.content for r in results] == [f"nap:{{'s': {i}}}" for i in range(30)]
    assert seconds < 0.6, seconds  # 30 × 0.2 s one at a time
    assert [a.calls for a in actors] == [10, 10, 10]  # least loaded, ties in turn


def test_a_call_whose_env_actor_died_is_retried():
    from toolmaster.envs.actor import RemoteToolRunner

    dying, healthy = _FakeActor(0.05, deaths=1), _FakeActor(0.05)
    runner = RemoteToolRunner([dying])
    assert asyncio.run(runner.arun(NAP, {"s": 1})).content == "nap:{'s': 1}" and dying.calls == 2
    always = RemoteToolRunner([_FakeActor(0.0, deaths=99)])
    failed = asyncio.run(always.arun(NAP, {"s": 1}))
    assert not failed.ok and "environment actors kept failing" in failed.content
    runner = RemoteToolRunner([_FakeActor(0.05, deaths=1), healthy])
    assert all(r.ok for r in asyncio.run(_timed(*(runner.arun(NAP, {"s": i}) for i in range(4))))[0])


class _SlowRunner(ToolRunner):
    """Each call takes ``delay`` s; at most ``slots`` run at once (the rest queue, as on a busy pool)."""

    def __init__(self, delay: float, slots: int):
        super().__init__(sandbox=None)
        self.delay, self.slots = delay, slots
        self._gate = None

    async def arun(self, tool, arguments):
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.slots)
        async with self._gate:
            await asyncio.sleep(self.delay)
        return ToolResult(True, "ok")


@pytest.mark.parametrize("slots", [16, 4])
def test_episodes_overlap_their_tool_calls_and_tool_time_counts_the_queue(cfg, slots):
    """16 episodes × 2 calls to a 0.2 s tool: with room for all, the whole run takes ≈ 0.4 s and each
    episode's tool time ≈ its calls × 0.2 s; with 4 slots the calls queue, and the queueing is tool time."""
    from toolmaster.agent.loop import run_episodes
    from toolmaster.envs import make_env

    env = make_env(cfg.env)
    tasks = env.tasks("train", 16)

    class TwoCalls:
        def generate(self, requests):
            out = []
            for r in requests:
                tool = r.task.tools[0]
                args = {p: "x" for p in tool.schema["parameters"].get("required", [])}
                turns = sum(m["role"] == "assistant" for m in r.messages)
                out.append(f'<tool_call>{json.dumps({"name": tool.name, "arguments": args})}</tool_call>'
                           if turns < 2 else "<answer>x</answer>")
            return out

    start = time.perf_counter()
    episodes = run_episodes(TwoCalls(), tasks, env, _SlowRunner(0.2, slots), max_turns=3)
    wall = time.perf_counter() - start
    assert all(len(ep.calls) == 2 and ep.error is None for ep in episodes)
    tool_time = sum(ep.timings["tools"] for ep in episodes) / len(episodes)
    if slots == 16:
        assert wall < 1.2 and 0.38 <= tool_time < 0.6, (wall, tool_time)  # 16 × 2 × 0.2 s = 6.4 s serially
    else:
        assert wall >= 1.55 and tool_time >= 1.2, (wall, tool_time)  # 32 calls / 4 slots = 8 rounds
