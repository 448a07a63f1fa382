"""Small fakes for unit tests: an OpenAI-compatible chat endpoint whose replies a test scripts."""
from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

from toolmaster.toolserver.process import free_port


class FakeOpenAI:
    """Serves /v1/chat/completions with ``reply(messages) -> str``; records every request's messages."""

    def __init__(self, reply):
        self.requests: list[list[dict]] = []
        self.bodies: list[dict] = []  # the whole request bodies (sampling settings, seed)
        app = FastAPI()

        @app.post("/v1/chat/completions")
        def complete(body: dict) -> dict:
            self.requests.append(body["messages"])
            self.bodies.append(body)
            text = reply(body["messages"])
            return {"id": "fake", "object": "chat.completion", "created": 0, "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.05)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def __enter__(self) -> "FakeOpenAI":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fault_injection_hook() -> None:
    """The Ray worker setup hook of the test session, in worker processes only (the driver's code is
    untouched). It does nothing unless a task asks, in its metadata (set by a test in the driver):
    ``grader_raises``: toolworld's grader raises for that task; ``probe_first_tool``: after the episode's first
    turn the task's first tool is called once through the worker's real tool runner, its observation added
    (so a tool runs even when the tiny model calls none)."""
    from toolmaster.agent import loop
    from toolmaster.envs.toolworld import ToolWorld

    take_turn = loop.take_turn

    async def take_turn_and_probe(episode, task, text, runner, tracker):
        await take_turn(episode, task, text, runner, tracker)
        first_turn = sum(m["role"] == "assistant" for m in episode.messages) == 1
        if task.metadata.get("probe_first_tool") and first_turn and not episode.done:
            tool = task.tools[0]
            result = await runner.arun(tool, {p: "x" for p in tool.schema["parameters"].get("required", [])})
            episode.messages.append({"role": "tool", "content": result.content})

    loop.take_turn = take_turn_and_probe

    original = ToolWorld.grade

    def grade(self, task, episode):
        if task.metadata.get("grader_raises"):
            raise RuntimeError("grader exploded")
        return original(self, task, episode)

    ToolWorld.grade = grade


class ScriptedPool:
    """A rollout pool whose episode outcomes a test scripts: ``outcome(task, episode_id, settings) -> bool``.
    Records carry what the driver reads (rewards, stats, tokens, timings); every call is kept."""

    def __init__(self, outcome, tokens_per_turn: int = 3):
        self.outcome, self.tokens_per_turn = outcome, tokens_per_turn
        self.calls: list[dict] = []  # {"episode_ids", "settings", "generation"} per run / run_specs
        self.handles: list[dict] = []  # every published weight handle, in order
        self.workers = {0: object()}
        self.replaced = self.episode_retries = 0
        self.events: list[dict] = []
        self.version = 0

    def record(self, episode_id: str, task, settings):
        from toolmaster.rollout.record import RolloutRecord

        correct = bool(self.outcome(task, episode_id, settings))
        n = self.tokens_per_turn
        return RolloutRecord(episode_id, task_id=task.id, answer="x", correct=correct, finish_reason="answer",
                             grade=float(correct), rewards={"correctness": float(correct), "total": float(correct)},
                             stats={"trial_calls": 1, "corrections": 0, "turns": 1}, turns=1,
                             token_ids=list(range(2 * n)), loss_mask=[0] * n + [1] * n,
                             logprobs=[0.0] * n + [-1.0] * n, policy_version=self.version, worker=0, node="n",
                             timings={"episode": 0.0, "generate": 0.0, "tools": 0.0, "score": 0.0})

    def run(self, tasks, group_size, step, on_record=None, sampling_round=0, settings=None):
        prefix = f"s{step}-" + (f"r{sampling_round}-" if sampling_round else "")
        specs = [(f"{prefix}t{i}-g{g}", task) for i, task in enumerate(tasks) for g in range(group_size)]
        return self.run_specs(specs, on_record, settings=settings)

    def run_specs(self, specs, on_record=None, generation=None, settings=None):
        self.calls.append({"episode_ids": [eid for eid, _ in specs], "settings": settings, "generation": generation})
        return [self.record(eid, task, settings) for eid, task in specs]

    def update_weights(self, handle: dict) -> float:
        self.handles.append(handle)
        self.version = handle["version"]
        return 0.0


class RecordingLearners:
    """A learner group that records every batch it is given and trains nothing."""

    def __init__(self):
        self.batches: list[tuple[dict, str]] = []
        self.saved: list[str] = []

    def reset(self, model_dir: str, cfg) -> None:
        self.reset_to = (model_dir, cfg)

    def load(self, path: str) -> None:
        self.loaded = path

    def train_step(self, batch: dict, kind: str) -> dict:
        self.batches.append((batch, kind))
        return {"loss": 0.0, "tokens": sum(sum(m) for m in batch["loss_mask"]), "microbatches": 1,
                "ratio_mean": 1.0, "kl": 0.0}

    def publish(self, version: int, transport: str) -> dict:
        return {"version": version, "ref": None}

    def save(self, path: str) -> None:
        import pathlib

        pathlib.Path(path).mkdir(parents=True, exist_ok=True)
        (pathlib.Path(path) / "config.json").write_text("{}")
        self.saved.append(path)
