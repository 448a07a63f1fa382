"""The LLM teacher: any OpenAI-compatible endpoint playing the agent in the real environment.

The teacher sees the conversation as the student model will (the tool list in the system turn in Qwen's
format, tool responses in user turns) plus a guide asking it to trial the tools, note what it learned,
execute and correct itself. Its trajectories are stored in the student's format, without the guide.
"""
from __future__ import annotations

import asyncio
import json

from toolmaster.protocol.chat_format import TOOLS_FOOTER, TOOLS_HEADER

TEACHER_GUIDE = (
    "\n\nYou are demonstrating how to master unfamiliar tools. Before relying on a tool, make one trial call "
    "(for example with no or simple arguments) and read its reply or error; then write what you learned inside "
    "<experience></experience>; then make the calls that solve the task, fixing any call that fails from its "
    "error message. Write tool calls exactly in the <tool_call></tool_call> format. End with the final answer "
    "inside <answer></answer>, or, when a Finish function is listed, by calling Finish."
)


def endpoint_messages(messages: list[dict], tools: list[dict]) -> list[dict]:
    """Our conversation for a chat endpoint: tools rendered into the system turn, tool replies as user turns
    (with a Qwen-style template this renders to the student's text, plus the guide)."""
    system = messages[0]["content"] + TEACHER_GUIDE + TOOLS_HEADER + "".join(
        "\n" + json.dumps(t, ensure_ascii=False) for t in tools) + TOOLS_FOOTER
    out = [{"role": "system", "content": system}]
    for msg in messages[1:]:
        if msg["role"] == "tool":
            block = f"<tool_response>\n{msg['content']}\n</tool_response>"
            if out[-1]["role"] == "user" and out[-1]["content"].startswith("<tool_response>"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block})
        else:
            out.append({"role": msg["role"], "content": msg["content"]})
    return out


class LLMTeacher:
    """An async policy for the agent loop: one endpoint call per turn, at most ``concurrency`` at once."""

    def __init__(self, endpoint_cfg, concurrency: int = 8):
        from toolmaster.llm.client import ChatClient

        self.client = ChatClient(endpoint_cfg)
        self._limit = None
        self._concurrency = concurrency

    async def respond(self, request) -> str | None:
        from toolmaster.llm.client import EndpointError

        if self._limit is None:  # created inside the running event loop
            self._limit = asyncio.Semaphore(self._concurrency)
        messages = endpoint_messages(request.messages, request.task.schemas)
        async with self._limit:
            try:
                return await asyncio.to_thread(self.client.chat, messages)
            except EndpointError as err:
                if "context" in str(err).lower() or "maximum" in str(err).lower():
                    return None  # the conversation outgrew the teacher's context: the episode ends there
                raise
