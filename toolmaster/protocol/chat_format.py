"""Qwen2.5-style chat format, as a Jinja chat template and as the identical Python renderer.

The template is what tokenizers ship (vLLM and transformers render with it); the Python renderer exists
so the protocol can render text where no tokenizer exists yet (training the tokenizer itself). A test
keeps the two byte-identical.
"""
from __future__ import annotations

import json

IM_START, IM_END, EOS = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = [EOS, IM_START, IM_END]
# Protocol tags: single tokens, but not "special", so decoding keeps them (the parser needs them).
TAG_TOKENS = [
    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
    "<experience>", "</experience>", "<answer>", "</answer>", "<tools>", "</tools>",
]

TOOLS_HEADER = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}'
    "\n</tool_call>"
)
DEFAULT_SYSTEM = "You are a helpful assistant."


def _tool_json(tool: dict) -> str:
    # Matches transformers' `tojson` filter (json.dumps, ensure_ascii=False, default separators).
    return json.dumps(tool, ensure_ascii=False)


def render_text(messages: list[dict], tools: list[dict] | None = None, add_generation_prompt: bool = False) -> str:
    out = []
    rest = messages
    if tools:
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else DEFAULT_SYSTEM
        if messages and messages[0]["role"] == "system":
            rest = messages[1:]
        body = "".join("\n" + _tool_json(t) for t in tools)
        out.append(f"{IM_START}system\n{system}{TOOLS_HEADER}{body}{TOOLS_FOOTER}{IM_END}\n")
    elif messages and messages[0]["role"] == "system":
        out.append(f"{IM_START}system\n{messages[0]['content']}{IM_END}\n")
        rest = messages[1:]
    for i, msg in enumerate(rest):
        role = msg["role"]
        if role in ("user", "assistant"):
            out.append(f"{IM_START}{role}\n{msg['content']}{IM_END}\n")
        elif role == "tool":
            first = i == 0 or rest[i - 1]["role"] != "tool"
            last = i == len(rest) - 1 or rest[i + 1]["role"] != "tool"
            out.append((f"{IM_START}user" if first else "") + f"\n<tool_response>\n{msg['content']}\n</tool_response>")
            if last:
                out.append(f"{IM_END}\n")
        else:
            raise ValueError(f"unknown message role {role!r}")
    if add_generation_prompt:
        out.append(f"{IM_START}assistant\n")
    return "".join(out)


def _jinja_literal(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Jinja string literal


CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content }}"
    "{%- else %}{{- " + _jinja_literal(DEFAULT_SYSTEM) + " }}{%- endif %}"
    "{{- " + _jinja_literal(TOOLS_HEADER) + " }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- " + _jinja_literal(TOOLS_FOOTER) + " }}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' and loop.first %}"
    "{%- elif message.role == 'user' or message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
