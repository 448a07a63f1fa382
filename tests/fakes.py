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
        app = FastAPI()

        @app.post("/v1/chat/completions")
        def complete(body: dict) -> dict:
            self.requests.append(body["messages"])
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


def failing_grader_hook() -> None:
    """A Ray worker setup hook for tests, in the worker processes only (the driver's code is untouched):
    toolworld's grader raises for every task whose index is a multiple of 3, and after each episode's first
    turn the task's first tool is called once through the worker's real tool runner, its observation added
    (so a tool runs even when the tiny model calls none)."""
    from toolmaster.agent import loop
    from toolmaster.envs.toolworld import ToolWorld

    take_turn = loop.take_turn

    def take_turn_and_probe(episode, task, text, runner, tracker):
        take_turn(episode, task, text, runner, tracker)
        if sum(m["role"] == "assistant" for m in episode.messages) == 1 and not episode.done:
            tool = task.tools[0]
            result = runner.run(tool, {p: "x" for p in tool.schema["parameters"].get("required", [])})
            episode.messages.append({"role": "tool", "content": result.content})

    loop.take_turn = take_turn_and_probe

    original = ToolWorld.grade

    def grade(self, task, episode):
        if int(task.id.rsplit("-", 1)[-1]) % 3 == 0:
            raise RuntimeError("grader exploded")
        return original(self, task, episode)

    ToolWorld.grade = grade
