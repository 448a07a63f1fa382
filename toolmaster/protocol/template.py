"""How a conversation becomes the model's text: the model tokenizer's own chat template, or the built-in
Qwen-format renderer for tokenizers made here.

Both take OpenAI-shaped conversations: ``tools`` as ``{"type": "function", "function": {...}}`` (bare
``{name, description, parameters}`` schemas are accepted too), assistant ``tool_calls`` (arguments as an
object or a JSON string), ``tool`` results and ``content: null``. The protocol's sampled turns are plain
assistant text (``<tool_call>`` blocks inline, the Qwen/Hermes native form), so a rendered conversation
continues exactly from the tokens a policy sampled.
"""
from __future__ import annotations

import json
from typing import Protocol

from toolmaster.protocol.chat_format import CHAT_TEMPLATE, IM_END, render_text


class TemplateError(ValueError):
    """A conversation or a chat template this framework cannot render exactly (named in the message)."""


class ChatFormat(Protocol):
    end_of_turn: str  # the token text that closes an assistant turn (the engine stops on it)

    def render(self, messages: list[dict], tools: list[dict] | None = None,
               add_generation_prompt: bool = False) -> str:
        """The conversation as the model's text."""


def openai_tools(tools: list[dict] | None) -> list[dict]:
    return [t if t.get("type") == "function" and "function" in t else {"type": "function", "function": t}
            for t in tools or []]


def bare_tools(tools: list[dict] | None) -> list[dict]:
    return [t["function"] if t.get("type") == "function" and "function" in t else t for t in tools or []]


def call_arguments(raw) -> dict:
    """A tool call's arguments as an object: OpenAI sends a JSON string, templates expect a mapping."""
    if isinstance(raw, dict):
        return raw
    if raw is None or raw == "":
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as err:
        raise TemplateError(f"tool call arguments are not JSON: {str(raw)[:80]!r}") from err
    if not isinstance(value, dict):
        raise TemplateError(f"tool call arguments must be a JSON object, got {str(raw)[:80]!r}")
    return value


def normalized(messages: list[dict]) -> list[dict]:
    """Messages a template can render: text content (``None`` and text parts joined), tool-call arguments
    as objects."""
    out = []
    for m in messages:
        msg = dict(m)
        content = msg.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        msg["content"] = "" if content is None else content
        if msg.get("tool_calls"):
            msg["tool_calls"] = [{**c, "function": {**c["function"],
                                                    "arguments": call_arguments(c["function"].get("arguments"))}}
                                 if "function" in c else c for c in msg["tool_calls"]]
        out.append(msg)
    return out


def inline_tool_calls(message: dict) -> str:
    """An assistant message's text with its ``tool_calls`` written as Qwen's template writes them."""
    parts = [message["content"]] if message.get("content") else []
    for call in message.get("tool_calls") or []:
        fn = call.get("function", call)
        parts.append('<tool_call>\n{"name": "' + fn["name"] + '", "arguments": '
                     + json.dumps(call_arguments(fn.get("arguments")), ensure_ascii=False) + "}\n</tool_call>")
    return "\n".join(parts)


class BuiltinChat:
    """The built-in Qwen2.5-style format of the tokenizers made here (``CHAT_TEMPLATE``): what the tiny
    model's tokenizer and its pre-training were built on, byte for byte."""

    end_of_turn = IM_END

    def render(self, messages, tools=None, add_generation_prompt=False) -> str:
        plain = [{"role": m["role"], "content": inline_tool_calls(m) if m["role"] == "assistant" else m["content"]}
                 for m in normalized(messages)]
        return render_text(plain, bare_tools(tools), add_generation_prompt)


class TemplateChat:
    """The tokenizer's own ``chat_template`` (transformers' ``apply_chat_template``, as vLLM's server uses it)."""

    def __init__(self, tokenizer, name: str = "the model"):
        self.tokenizer, self.name = tokenizer, name
        self.end_of_turn = tokenizer.eos_token
        probe = self.render([{"role": "user", "content": "x"}, {"role": "assistant", "content": "PROBE"}])
        if not self.end_of_turn or probe.find("PROBE" + self.end_of_turn) < 0:
            raise TemplateError(f"the chat template of {name} does not close an assistant turn with its eos token "
                                f"({self.end_of_turn!r}); this framework stops sampling on that token")

    def render(self, messages, tools=None, add_generation_prompt=False) -> str:
        return self.tokenizer.apply_chat_template(normalized(messages), tools=openai_tools(tools) or None,
                                                  tokenize=False, add_generation_prompt=add_generation_prompt)


def chat_format(tokenizer, name: str = "the model") -> ChatFormat:
    """The model's own template; the built-in renderer for a tokenizer made here (same text, no Jinja)."""
    template = getattr(tokenizer, "chat_template", None)
    if template == CHAT_TEMPLATE:
        return BuiltinChat()
    if not template:
        raise TemplateError(f"the tokenizer of {name} has no chat_template: a chat model's tokenizer ships one "
                            "(tokenizer_config.json or chat_template.jinja)")
    return TemplateChat(tokenizer, name)


def turn_spans(fmt: ChatFormat, messages: list[dict], tools: list[dict] | None) -> tuple[list[tuple[str, bool]], str]:
    """The conversation's text through its last assistant turn, as consecutive spans (text, is_assistant):
    each assistant span runs from after its generation prompt through its end-of-turn token, what a policy
    samples. Also the whole text. Raises TemplateError when the template re-renders earlier turns (it must
    extend a conversation's text, as exact-token training needs)."""
    spans, covered = [], 0
    full = fmt.render(messages, tools)
    for k, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prompt = fmt.render(messages[:k], tools, add_generation_prompt=True)
        upto = fmt.render(messages[:k + 1], tools)
        end = upto.rfind(fmt.end_of_turn)
        if not (upto.startswith(prompt) and full.startswith(upto) and end >= len(prompt)
                and prompt.startswith(full[:covered])):
            raise TemplateError(f"the chat template does not extend the conversation's text at message {k}: it "
                                "re-renders earlier turns, which exact-token training cannot follow")
        end += len(fmt.end_of_turn)
        spans += [(prompt[covered:], False), (upto[len(prompt):end], True)]
        covered = end
    return spans, full


def prompt_delta(fmt: ChatFormat, messages: list[dict], tools: list[dict] | None, continuing: bool) -> str:
    """The text a policy did not sample before its next turn: the whole prompt when ``continuing`` is false;
    otherwise from the end-of-turn token of the last assistant message (its last sampled token) through the
    next generation prompt."""
    full = fmt.render(messages, tools, add_generation_prompt=True)
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if not continuing or last is None:
        return full
    upto = fmt.render(messages[:last + 1], tools)
    end = upto.rfind(fmt.end_of_turn) + len(fmt.end_of_turn)
    if end < len(fmt.end_of_turn) or not full.startswith(upto[:end]):
        raise TemplateError("the chat template does not extend the conversation's text after the last assistant "
                            "turn: it re-renders earlier turns, which exact-token training cannot follow")
    return full[end:]
