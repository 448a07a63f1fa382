import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolmaster.protocol import parse_turn

TOOLS = [
    {"name": "get_velo", "description": "d", "parameters": {"type": "object", "properties": {
        "tavo": {"type": "string"}, "n": {"type": "integer"}, "mode": {"type": "string", "enum": ["a", "b"]}},
        "required": ["tavo"]}},
    {"name": "ping", "description": "d", "parameters": {"type": "object", "properties": {}}},
]


def call(obj) -> str:
    return f"<tool_call>\n{obj if isinstance(obj, str) else json.dumps(obj)}\n</tool_call>"


def test_valid_calls_experience_answer():
    text = ("<experience>velo needs id:</experience>\n" + call({"name": "get_velo", "arguments": {"tavo": "x"}})
            + call({"name": "ping", "arguments": "{}"}))
    turn = parse_turn(text, TOOLS)
    assert turn.ok and [c.name for c in turn.calls] == ["get_velo", "ping"]
    assert turn.experience == "velo needs id:" and turn.answer is None
    assert parse_turn("<answer> 42 </answer>", TOOLS).answer == "42"


def test_each_error_kind():
    cases = {
        call("{not json"): "bad_json",
        call("[1, 2]"): "bad_call",
        call({"arguments": {}}): "bad_call",
        call({"name": "nope", "arguments": {}}): "unknown_tool",
        call({"name": "get_velo", "arguments": {}}): "bad_arguments",  # missing required
        call({"name": "get_velo", "arguments": {"tavo": 3}}): "bad_arguments",  # wrong type
        call({"name": "get_velo", "arguments": {"tavo": "x", "zz": 1}}): "bad_arguments",  # unknown argument
        call({"name": "get_velo", "arguments": {"tavo": "x", "mode": "c"}}): "bad_arguments",  # enum
        call({"name": "get_velo", "arguments": {"tavo": "x", "n": True}}): "bad_arguments",  # bool is no integer
        call({"name": "get_velo", "arguments": [1]}): "bad_arguments",
        "<tool_call>{\"name\": \"ping\"": "unclosed_tag",
        "hello there": "no_action",
        "<answer>unfinished": "unclosed_tag",
    }
    for text, kind in cases.items():
        turn = parse_turn(text, TOOLS)
        assert [e.kind for e in turn.errors] == [kind], text
        assert turn.errors[0].render().startswith("error: ")


def test_unknown_tool_error_lists_available_tools():
    err = parse_turn(call({"name": "get_vel", "arguments": {}}), TOOLS).errors[0]
    assert "get_velo" in err.message and err.tool == "get_vel"


def test_errors_keep_call_order():
    text = call({"name": "ping", "arguments": {}}) + call("oops") + call({"name": "ping", "arguments": {}})
    items = parse_turn(text, TOOLS).items
    assert [type(i).__name__ for i in items] == ["ToolCall", "ParseError", "ToolCall"]


_fragments = st.sampled_from([
    "<tool_call>", "</tool_call>", "<answer>", "</answer>", "<experience>", "</experience>", "{", "}", "[", "]",
    '"name"', '"arguments"', ":", ",", '"get_velo"', '"ping"', '"tavo"', "null", "1e999", "-0", "\\u0000",
    '"\\ud800"', "\n", " ", "[" * 3000, "9" * 5000, '{"name": "get_velo", "arguments": {"tavo": ',
])
_text = st.one_of(st.text(max_size=300),
                  st.lists(st.one_of(_fragments, st.text(max_size=20)), max_size=40).map("".join))


@settings(max_examples=3_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(_text)
def test_parser_never_raises(text):
    turn = parse_turn(text, TOOLS)
    for err in turn.errors:
        assert isinstance(err.render(), str)
    assert all(isinstance(c.arguments, dict) for c in turn.calls)


def test_non_string_input_does_not_raise():
    assert parse_turn(None, TOOLS).errors[0].kind == "no_action"
    assert parse_turn(b"bytes", TOOLS).errors
