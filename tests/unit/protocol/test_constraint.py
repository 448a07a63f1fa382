import re

from toolmaster.protocol.constraint import tool_call_regex
from toolmaster.protocol.parser import parse_turn
from toolmaster.protocol.template import inline_tool_calls

TOOLS = [{"type": "function", "function": {"name": "get.rate", "description": "", "parameters": {
    "type": "object", "required": ["city", "days", "exact", "unit", "scale"],
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "exact": {"type": "boolean"},
                   "unit": {"type": "string", "enum": ["c", "f"]}, "scale": {"type": "number"},
                   "note": {"type": "string"}}}}},
         {"name": "ping", "parameters": {"type": "object", "properties": {}}}]


def _turn(*calls) -> str:
    return inline_tool_calls({"content": None, "tool_calls": [{"function": {"name": n, "arguments": a}}
                                                              for n, a in calls]})


def test_the_turns_it_allows_are_calls_the_parser_reads_back():
    regex = re.compile(tool_call_regex(TOOLS))
    args = {"city": "Paris 2", "days": -3, "exact": True, "unit": "f", "scale": 1.25}
    for turn in (_turn(("get.rate", args)), _turn(("ping", {}), ("get.rate", args)), "<answer>42 km</answer>"):
        assert regex.fullmatch(turn), turn
        parsed = parse_turn(turn, [t.get("function", t) for t in TOOLS])
        assert not parsed.errors, (turn, parsed.errors)


def test_it_refuses_what_the_tools_do_not_accept():
    regex = re.compile(tool_call_regex(TOOLS))
    good = {"city": "Paris", "days": 3, "exact": False, "unit": "c", "scale": 2}
    for turn in (_turn(("unknown", {})),                                   # not the task's tool
                 _turn(("get.rate", {**good, "unit": "k"})),                # outside the enum
                 _turn(("get.rate", {**good, "days": "3"})),                # a string for an integer
                 _turn(("get.rate", {k: v for k, v in good.items() if k != "city"})),  # a required one missing
                 _turn(("ping", {}), ("ping", {}), ("ping", {})),           # more calls than a turn may hold
                 "some free text", "<answer></answer>"):
        assert not regex.fullmatch(turn), turn


def test_a_task_without_tools_can_only_answer():
    assert re.fullmatch(tool_call_regex([]), "<answer>yes</answer>")
    assert not re.fullmatch(tool_call_regex([]), _turn(("ping", {})))
