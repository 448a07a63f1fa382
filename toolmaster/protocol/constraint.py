"""A regular expression an assistant turn must match when decoding is constrained (``generation.constrain``).

``tool_calls`` allows a turn of one or two calls to the task's own tools, written as ``inline_tool_calls``
writes them, with the required arguments in schema order and well-typed values, or a short answer. This is
what vLLM's ``tool_choice="required"`` does for its OpenAI server, in this protocol's turn format: a model
that has not learnt the format yet (random weights, a base model) still makes parsed calls and goes on over
several turns. Values are drawn from a small alphabet so that a constrained turn stays short.
"""
from __future__ import annotations

import json
import re

from toolmaster.protocol.template import bare_tools

_TEXT = r"[A-Za-z0-9 _.-]"
_VALUES = {"string": f'"{_TEXT}{{1,12}}"', "integer": r"-?[0-9]{1,6}", "number": r"-?[0-9]{1,6}(\.[0-9]{1,4})?",
           "boolean": "(true|false)"}
_MAX_CALLS = 2


def _value(prop: dict) -> str:
    if prop.get("enum"):
        return "(" + "|".join(re.escape(json.dumps(v, ensure_ascii=False)) for v in prop["enum"]) + ")"
    return _VALUES.get(prop.get("type"), "null")


def _call(schema: dict) -> str:
    params = schema.get("parameters") or {}
    props = params.get("properties") or {}
    args = ", ".join(re.escape(json.dumps(name)) + ": " + _value(props.get(name, {}))
                     for name in params.get("required") or [])
    return re.escape('{"name": ' + json.dumps(schema["name"], ensure_ascii=False) + ', "arguments": {') \
        + args + re.escape("}}")


def tool_call_regex(tools: list[dict]) -> str:
    """The turns a ``tool_calls`` constraint allows over ``tools`` (OpenAI-shaped or bare schemas)."""
    schemas = bare_tools(tools)
    answer = f"<answer>{_TEXT}{{1,24}}</answer>"
    if not schemas:
        return answer
    call = "<tool_call>\n(" + "|".join(_call(s) for s in schemas) + ")\n</tool_call>"
    return f"({call}(\n{call}){{0,{_MAX_CALLS - 1}}}|{answer})"
