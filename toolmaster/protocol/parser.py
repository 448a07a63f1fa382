"""Read one assistant turn back into tool calls, an experience note and an answer.

``parse_turn`` never raises on model output. Anything wrong (malformed JSON, an unknown tool, missing,
unknown or mistyped arguments, an unclosed tag, a turn that does nothing) becomes a ``ParseError`` that
the agent loop renders as a tool observation, so the model can correct itself from it.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_CALL_RE = re.compile(r"<tool_call>(.*?)(</tool_call>|$)", re.DOTALL)
_EXPERIENCE_RE = re.compile(r"<experience>(.*?)</experience>", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict


@dataclass(frozen=True)
class ParseError:
    kind: str  # bad_json | bad_call | unknown_tool | bad_arguments | unclosed_tag | no_action | internal
    message: str
    tool: str | None = None  # the tool the broken call meant, when it could be read

    def render(self) -> str:
        return f"error: {self.message}"


@dataclass
class ParsedTurn:
    text: str
    items: list = field(default_factory=list)  # ToolCall | ParseError, in the order the turn wrote them
    experience: str | None = None
    answer: str | None = None
    turn_errors: list = field(default_factory=list)  # errors about the turn as a whole

    @property
    def calls(self) -> list[ToolCall]:
        return [i for i in self.items if isinstance(i, ToolCall)]

    @property
    def errors(self) -> list[ParseError]:
        return [i for i in self.items if isinstance(i, ParseError)] + list(self.turn_errors)

    @property
    def format_errors(self) -> list[ParseError]:
        """Errors in how the turn is written; a well-formed call to a known tool with wrong arguments is a
        failed call instead (a bare trial call is one on purpose)."""
        return [e for e in self.errors if e.kind != "bad_arguments"]

    @property
    def ok(self) -> bool:
        return not self.errors


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_ok(value, spec: dict) -> bool:
    expected = spec.get("type")
    if expected is None:
        return True
    types = expected if isinstance(expected, list) else [expected]
    return any(_JSON_TYPES.get(t, lambda v: True)(value) for t in types)


def validate_arguments(arguments: dict, parameters: dict) -> str | None:
    """Check arguments against a function's JSON-schema parameters; return a message or None."""
    props = parameters.get("properties") or {}
    problems = []
    for name in parameters.get("required") or []:
        if name not in arguments:
            problems.append(f"missing required argument {name!r}")
    for name, value in arguments.items():
        spec = props.get(name)
        if spec is None:
            problems.append(f"unknown argument {name!r} (expected one of {sorted(props)})")
            continue
        if not _type_ok(value, spec):
            problems.append(f"argument {name!r} should be of type {spec.get('type')}, got {_short(value)}")
        elif "enum" in spec and value not in spec["enum"]:
            problems.append(f"argument {name!r} must be one of {spec['enum']}, got {_short(value)}")
    return "; ".join(problems) or None


def _parse_call(body: str, schemas: dict[str, dict]):
    body = body.strip()
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as err:
        return ParseError("bad_json", f"tool call is not valid JSON ({type(err).__name__}: {str(err)[:80]}): "
                                      f"{_short(body, 80)}")
    if not isinstance(obj, dict):
        return ParseError("bad_call", 'tool call must be a JSON object {"name": ..., "arguments": {...}}')
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return ParseError("bad_call", 'tool call has no "name" string')
    if name not in schemas:
        return ParseError("unknown_tool", f"unknown tool {_short(name)}; available tools: {sorted(schemas)}", name)
    arguments = obj.get("arguments", {})
    if isinstance(arguments, str):  # OpenAI style: arguments as a JSON string
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError):
            return ParseError("bad_arguments", f'"arguments" of {name} is a string that is not JSON', name)
    if not isinstance(arguments, dict):
        return ParseError("bad_arguments", f'"arguments" of {name} must be a JSON object', name)
    problem = validate_arguments(arguments, schemas[name].get("parameters") or {})
    if problem:
        return ParseError("bad_arguments", f"{name}: {problem}", name)
    return ToolCall(name, arguments)


def parse_turn(text, tools: list[dict]) -> ParsedTurn:
    """Parse assistant text against the OpenAI function schemas the task offers."""
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    turn = ParsedTurn(text=text)
    try:
        schemas = {t["name"]: t for t in tools}
        for match in _CALL_RE.finditer(text):
            if not match.group(2):
                turn.items.append(ParseError("unclosed_tag", "<tool_call> was not closed with </tool_call>"))
                continue
            turn.items.append(_parse_call(match.group(1), schemas))
        if m := _EXPERIENCE_RE.search(text):
            turn.experience = m.group(1).strip()
        if m := _ANSWER_RE.search(text):
            turn.answer = m.group(1).strip()
        elif "<answer>" in text:
            turn.turn_errors.append(ParseError("unclosed_tag", "<answer> was not closed with </answer>"))
        if not turn.items and turn.answer is None and turn.experience is None and not turn.turn_errors:
            turn.turn_errors.append(ParseError(
                "no_action", "no tool call and no answer; call a tool with <tool_call>{...}</tool_call> "
                             "or finish with <answer>...</answer>"))
    except Exception as err:  # a parser bug must not kill a rollout; it is logged and shown to the agent
        log.exception("parser failed on model output")
        turn.turn_errors.append(ParseError("internal", f"could not read this turn ({type(err).__name__})"))
    return turn
