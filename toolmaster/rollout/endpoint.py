"""An OpenAI-compatible chat endpoint on one rollout worker's engine that records every session's tokens.

Agents written against the OpenAI API (their own code, agent SDKs) run against ``/s/<session>/v1``: the
session is the episode, so every request of one conversation lands in one trajectory of the worker's
engine (``VLLMEngine.respond``: generation from the accumulated token ids, loss mask 1 exactly on sampled
tokens). Served from the worker's own event loop (aiohttp), beside its engine.

Clients re-serialize their history (tool calls as JSON, ``content: null``): each assistant message that
means the same as a turn this session sampled is replaced by that turn's exact text, so the rendered
conversation extends the recorded tokens. A history that does not (the client rewrote or dropped turns)
closes the trajectory as a segment and starts a new one, whose earlier tokens all have loss mask 0: no
token is trained twice.

Routes: ``GET /s/<session>/v1/models``, ``POST /s/<session>/v1/chat/completions`` (``stream`` too,
``tools``, ``tool_choice``, ``max_tokens``, ``temperature``, ``stop``; ``tool_calls`` come back for every
well-formed call of an offered tool, a malformed call as plain text, never a 500).
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field

from toolmaster.agent.loop import TurnRequest


@dataclass
class Session:
    """One episode's conversation as this endpoint saw it."""
    turns: list[tuple[dict, str]] = field(default_factory=list)  # (the message we returned, the exact text)
    rendered: str = ""  # the conversation text the current trajectory covers, through the last sampled turn
    segments: list = field(default_factory=list)  # closed trajectories (a history that broke the prefix)
    requests: int = 0
    last_messages: list = field(default_factory=list)  # the last request's conversation (protocol form)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one request of a session at a time


@dataclass
class _Tools:
    """What ``VLLMEngine.respond`` reads of a task: the tool schemas to render."""
    schemas: list[dict]


def _arguments(raw) -> dict | str:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return str(raw)
    return value if isinstance(value, dict) else str(raw)


def _meaning(message: dict) -> tuple:
    """What an assistant message says, however a client serialized it."""
    calls = tuple((c.get("function", {}).get("name"), json.dumps(_arguments(c.get("function", {}).get("arguments")),
                                                                  sort_keys=True))
                  for c in message.get("tool_calls") or [])
    return (_text(message.get("content")).strip(), calls)


def _text(content) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _as_protocol_text(message: dict) -> str:
    """An assistant message a client wrote itself, in the protocol's text form."""
    text = _text(message.get("content"))
    for call in message.get("tool_calls") or []:
        fn = call.get("function", {})
        body = json.dumps({"name": fn.get("name"), "arguments": _arguments(fn.get("arguments"))}, ensure_ascii=False)
        text += f"\n<tool_call>\n{body}\n</tool_call>"
    return text.strip("\n") if not _text(message.get("content")) else text


def to_protocol(messages: list[dict], session: Session) -> list[dict]:
    """OpenAI chat messages as protocol messages, replaying this session's sampled turns exactly."""
    out, turn = [], 0
    for m in messages:
        role = m.get("role")
        if role == "assistant":
            if turn < len(session.turns) and _meaning(m) == _meaning(session.turns[turn][0]):
                out.append({"role": "assistant", "content": session.turns[turn][1]})
            else:
                out.append({"role": "assistant", "content": _as_protocol_text(m)})
            turn += 1
        elif role in ("system", "user", "tool"):
            out.append({"role": role, "content": _text(m.get("content"))})
        elif role == "developer":
            out.append({"role": "system", "content": _text(m.get("content"))})
        else:
            raise ValueError(f"unknown message role {role!r}")
    return out


_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def to_openai_message(text: str, schemas: list[dict]) -> tuple[dict, str]:
    """The sampled text as an OpenAI assistant message and its finish reason. Each ``<tool_call>`` whose body
    is a JSON object naming an offered tool, with an object of arguments, becomes a ``tool_calls`` entry —
    arguments are not checked against the schema: as with any OpenAI-compatible server, running the call
    (and reporting a missing argument) is the agent's job, which is what trial calls rely on. A turn with any
    other ``<tool_call>`` body stays plain text."""
    names = {s["name"] for s in schemas}
    calls = []
    for body in _CALL.findall(text):
        try:
            call = json.loads(body)
        except ValueError:
            return {"role": "assistant", "content": text}, "stop"
        if not (isinstance(call, dict) and call.get("name") in names and isinstance(call.get("arguments", {}), dict)):
            return {"role": "assistant", "content": text}, "stop"
        calls.append(call)
    if not calls or text.count("<tool_call>") != len(calls):  # an unclosed call is malformed too
        return {"role": "assistant", "content": text}, "stop"
    content = text.split("<tool_call>", 1)[0].strip()
    tool_calls = [{"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                   "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}), ensure_ascii=False)}}
                  for c in calls]
    return {"role": "assistant", "content": content or None, "tool_calls": tool_calls}, "tool_calls"


def visible_text(text: str, stop: list[str] | None) -> str:
    """What an OpenAI server returns of a turn that ended on a stop string: the text before it. The tokens
    that spelled the stop string were sampled, so they stay in the trajectory (and replay restores them)."""
    cut = min((i for i in (text.find(s) for s in stop or [] if s) if i >= 0), default=len(text))
    return text[:cut]


def _stop_list(body: dict) -> list[str] | None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return [stop] if stop else None
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise ValueError(f"stop must be a string or a list of strings, got {stop!r}")


def _bad_request(err):
    from aiohttp import web

    return web.json_response({"error": {"message": f"bad request: {err}", "type": "invalid_request_error"}}, status=400)


class AgentEndpoint:
    def __init__(self, engine, model_name: str, host: str = "127.0.0.1"):
        self.engine, self.model_name, self.host = engine, model_name, host
        self.sessions: dict[str, Session] = {}
        self.base_generation: dict = {}  # session -> GenerationConfig a request's fields override
        self.fixed_sampling: set = set()  # sessions (training episodes) whose requests cannot change sampling
        self.port: int | None = None
        self._runner = None

    async def start(self) -> str:
        from aiohttp import web

        app = web.Application(client_max_size=8 << 20)
        app.router.add_get("/s/{session}/v1/models", self._models)
        app.router.add_post("/s/{session}/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return f"http://{self.host}:{self.port}"

    def base_url(self, session: str) -> str:
        return f"http://{self.host}:{self.port}/s/{session}/v1"

    def close_session(self, session: str) -> tuple[list, Session]:
        """The session's trajectories (segments), oldest first, with the open one last; and its state."""
        state = self.sessions.pop(session, Session())
        last = self.engine.pop_trajectory(session)
        return state.segments + ([last] if last is not None and last.token_ids else []), state

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request):
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": self.model_name, "object": "model",
                                                              "owned_by": "toolmaster",
                                                              "max_model_len": self.engine.max_len}]})

    async def _chat(self, request):
        from aiohttp import web

        sid = request.match_info["session"]
        try:
            body = await request.json()
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("body must be a JSON object with a messages list")
            schemas = [t["function"] for t in body.get("tools") or [] if t.get("type", "function") == "function"]
            if body.get("tool_choice") == "none":
                schemas = []
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            return _bad_request(err)
        session = self.sessions.setdefault(sid, Session())
        async with session.lock:  # requests of one conversation extend one trajectory, in order
            try:
                messages = to_protocol(body["messages"], session)
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                return _bad_request(err)
            try:
                stop = _stop_list(body)
                text, usage = await self._generate(sid, session, messages, schemas, body, stop)
            except ValueError as err:  # stop, max_tokens or temperature out of range
                return _bad_request(err)
            if text is not None:
                message, finish = to_openai_message(visible_text(text, stop), schemas)
                if self.engine.trajectories[sid].last_finish == "length":
                    finish = "length"  # cut by max_tokens: the client must not take it for a finished turn
                session.turns.append((message, text))
        if text is None:
            return web.json_response({"error": {"message": "the conversation no longer fits the model's context "
                                                f"({self.engine.max_len} tokens)", "type": "context_length_exceeded"}},
                                     status=400)
        reply = {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion", "created": int(time.time()),
                 "model": self.model_name, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                 "usage": usage}
        if not body.get("stream"):
            return web.json_response(reply)
        return await self._stream(request, reply)

    async def _generate(self, sid: str, session: Session, messages: list[dict], schemas: list[dict], body: dict,
                        stop: list[str] | None):
        from toolmaster.config import GenerationConfig

        rendered = self.engine.chat.render(messages, schemas, add_generation_prompt=True)
        if session.rendered and not rendered.startswith(session.rendered):  # a real break: a new segment
            closed = self.engine.pop_trajectory(sid)
            if closed is not None and closed.token_ids:
                session.segments.append(closed)
        generation = self.base_generation.get(sid, self.engine.default_generation)
        overrides = {k: v for k, v in (("max_new_tokens", body.get("max_tokens") or body.get("max_completion_tokens")),
                                       ("temperature", body.get("temperature"))) if v is not None}
        if sid in self.fixed_sampling:  # training: the run's sampling, whatever the agent asks for
            overrides = {}
        self.engine.set_episode_generation(sid, GenerationConfig(**{**generation.model_dump(), **overrides}),
                                           stop=stop)
        session.requests += 1
        session.last_messages = messages
        traj = self.engine.trajectories.get(sid)
        sampled_before = sum(traj.loss_mask) if traj else 0
        text = await self.engine.respond(TurnRequest(sid, messages, _Tools(schemas)))
        if text is not None:
            session.rendered = rendered + text + self.engine.chat.end_of_turn
        traj = self.engine.trajectories.get(sid)
        completion = (sum(traj.loss_mask) if traj else 0) - sampled_before  # exactly the tokens sampled (trained)
        total = len(traj.token_ids) if traj else 0
        return text, {"prompt_tokens": total - completion, "completion_tokens": completion, "total_tokens": total}

    async def _stream(self, request, reply: dict):
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        choice = reply["choices"][0]
        message = choice["message"]
        base = {k: reply[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
        delta: dict = {"role": "assistant", "content": message.get("content")}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
        for chunk in ({"index": 0, "delta": delta, "finish_reason": None},
                      {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}):
            await response.write(f"data: {json.dumps({**base, 'choices': [chunk]})}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
