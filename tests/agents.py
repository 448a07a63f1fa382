"""Agents for the tests, written only with the ``openai`` SDK (what a user brings): multi-turn, ``tools=``
and ``tool_calls``, a tool the agent runs itself. Importable from rollout workers as ``tests.agents``."""
import json

TOOLS = [{"type": "function", "function": {
    "name": "add", "description": "Add two integers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"]}}}]


async def adder(task: dict, client, model: str) -> dict:
    """Asks the sum, runs any add calls itself, asks again when the reply is not the answer; sends its
    history back as the SDK serializes it (``model_dump``: tool_calls as JSON, ``content: None``)."""
    messages = [{"role": "system", "content": "Use the add tool, then answer with the number."},
                {"role": "user", "content": f"What is {task['a']} + {task['b']}?"}]
    completion_tokens = 0
    for _ in range(3):
        reply = await client.chat.completions.create(model=model, messages=messages, tools=TOOLS, max_tokens=24)
        completion_tokens += reply.usage.completion_tokens
        message = reply.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if message.tool_calls:
            for call in message.tool_calls:
                try:
                    args = json.loads(call.function.arguments)
                    result = str(int(args["a"]) + int(args["b"]))
                except (ValueError, KeyError, TypeError) as err:
                    result = f"error: {err}"
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        else:
            messages.append({"role": "user", "content": "Answer with the number only."})
    answer = str(task["a"] + task["b"])
    said = " ".join(m.get("content") or "" for m in messages if m["role"] == "assistant")
    return {"reward": float(answer in said), "metrics": {"completion_tokens": completion_tokens,
                                                          "requests": 3}}


async def rewriter(task: dict, client, model: str) -> dict:
    """Like ``adder`` but rewrites its history before each request: arguments re-encoded with other
    spacing and key order, ids replaced, whitespace around content. Still one conversation."""
    messages = [{"role": "user", "content": f"What is {task['a']} + {task['b']}?"}]
    completion_tokens = 0
    for turn in range(3):
        reply = await client.chat.completions.create(model=model, messages=messages, tools=TOOLS, max_tokens=24,
                                                     stream=turn == 1)
        if turn == 1:  # streamed: assemble the message from the chunks
            content, calls = "", []
            async for chunk in reply:
                delta = chunk.choices[0].delta
                content += delta.content or ""
                calls += [c.model_dump() for c in delta.tool_calls or []]
            message = {"role": "assistant", "content": content or None}
            if calls:
                message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
        else:
            completion_tokens += reply.usage.completion_tokens
            message = reply.choices[0].message.model_dump(exclude_none=True)
        for call in message.get("tool_calls") or []:
            call["id"] = f"rewritten-{turn}"
            try:
                call["function"]["arguments"] = json.dumps(
                    dict(reversed(json.loads(call["function"]["arguments"]).items())), indent=1)
            except (ValueError, AttributeError):
                pass
        if message.get("content"):
            message["content"] = f"  {message['content']}\n"
        messages.append(message)
        messages.append({"role": "user", "content": "Go on."})
    return 0.0


async def raises(task: dict, client, model: str) -> float:
    await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    raise RuntimeError("agent bug")


async def stopper(task: dict, client, model: str) -> dict:
    """The sampling limits a client sets: a turn cut by ``max_tokens`` ends with finish_reason ``length``;
    a turn that hit a ``stop`` string is returned without it (OpenAI's behaviour)."""
    messages = [{"role": "user", "content": "Count."}]
    cut = await client.chat.completions.create(model=model, messages=messages, max_tokens=3)
    messages += [cut.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": "Talk."}]
    stops = ["a", "e", "o", " "]
    stopped = await client.chat.completions.create(model=model, messages=messages, max_tokens=48, stop=stops,
                                                   temperature=1.0)
    content = stopped.choices[0].message.content or ""
    return {"reward": 0.0, "metrics": {
        "cut_is_length": float(cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 3),
        "stop_hit": float(stopped.choices[0].finish_reason == "stop"),
        "stop_string_shown": float(any(s in content for s in stops)),
        "stopped_tokens": stopped.usage.completion_tokens}}
