"""The endpoint's message mapping: re-serialized histories replay the exact sampled text; well-formed calls
of offered tools become tool_calls, malformed ones stay text."""
import json

import pytest

from toolmaster.rollout.endpoint import Session, to_openai_message, to_protocol

ADD = {"name": "add", "description": "add two integers",
       "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                      "required": ["a", "b"]}}
SAMPLED = 'Let me add.<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'


def test_tool_calls_are_parsed_and_malformed_ones_stay_text():
    message, finish = to_openai_message(SAMPLED, [ADD])
    assert finish == "tool_calls" and message["content"] == "Let me add."
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["add"]
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"a": 2, "b": 3}
    # a probe with a required argument missing is still a call: the agent's tool reports what is missing
    probe, finish = to_openai_message('<tool_call>{"name": "add", "arguments": {"a": 2}}</tool_call>', [ADD])
    assert finish == "tool_calls" and json.loads(probe["tool_calls"][0]["function"]["arguments"]) == {"a": 2}
    for bad in ['<tool_call>{"name": "mul", "arguments": {}}</tool_call>', '<tool_call>{not json',
                '<tool_call>{"name": "add", "arguments": {}}',
                '<tool_call>{"name": "add", "arguments": [1]}</tool_call>', "just text"]:
        message, finish = to_openai_message(bad, [ADD])
        assert finish == "stop" and message == {"role": "assistant", "content": bad}


def test_a_reserialized_history_replays_the_sampled_text():
    session = Session()
    returned, _ = to_openai_message(SAMPLED, [ADD])
    session.turns.append((returned, SAMPLED))
    call = returned["tool_calls"][0]
    rewritten = {"role": "assistant", "content": "  Let me add.  ", "tool_calls": [
        {"id": "other-id", "type": "function",
         "function": {"name": "add", "arguments": json.dumps({"b": 3, "a": 2}, indent=2)}}]}
    history = [{"role": "user", "content": "2+3?"}, rewritten,
               {"role": "tool", "tool_call_id": call["id"], "content": "5"}]
    out = to_protocol(history, session)
    assert out[1] == {"role": "assistant", "content": SAMPLED}  # byte-exact: the recorded tokens extend
    assert out[2] == {"role": "tool", "content": "5"}
    changed = dict(rewritten, content="I will multiply.")
    assert to_protocol([history[0], changed], session)[1]["content"] != SAMPLED  # a real rewrite is not replayed


def test_content_parts_and_developer_messages():
    out = to_protocol([{"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                       {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]}], Session())
    assert out == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def test_a_stop_string_is_cut_from_the_returned_text():
    from toolmaster.rollout.endpoint import _stop_list, visible_text

    assert visible_text("abc STOP def", ["STOP"]) == "abc "
    assert visible_text("x; y. z", [".", ";"]) == "x"  # the earliest stop string ends the turn
    assert visible_text("no stop here", ["##"]) == visible_text("no stop here", None) == "no stop here"
    assert (_stop_list({"stop": "x"}) == ["x"] and _stop_list({}) is None
            and _stop_list({"stop": ["a", "b"]}) == ["a", "b"])
    with pytest.raises(ValueError, match="stop must be a string or a list of strings"):
        _stop_list({"stop": 5})


class _RecordingEngine:
    """What the endpoint asks of an engine: the sampling each request gets, and one turn of text."""

    def __init__(self):
        from toolmaster.config import GenerationConfig
        from toolmaster.protocol.template import BuiltinChat
        from toolmaster.rollout.trajectory import Trajectory

        self.chat, self.default_generation = BuiltinChat(), GenerationConfig(temperature=1.0, max_new_tokens=64)
        self.trajectories, self.asked, self._traj = {}, [], Trajectory

    def set_episode_generation(self, sid, generation, stop=None, seed=None):
        self.asked.append(generation)

    async def respond(self, request):
        self.trajectories.setdefault(request.episode_id, self._traj(request.episode_id))
        return "hi"


@pytest.mark.parametrize("training", [True, False])
def test_in_training_the_runs_sampling_applies_whatever_the_agent_asks(training):
    """An agent written with temperature 0 would sample G identical episodes in GRPO, and no group would train."""
    import asyncio

    from toolmaster.rollout.endpoint import AgentEndpoint, Session

    engine = _RecordingEngine()
    endpoint = AgentEndpoint(engine, "m")
    if training:
        endpoint.fixed_sampling.add("s")
    body = {"messages": [{"role": "user", "content": "q"}], "temperature": 0, "max_tokens": 5}
    asyncio.run(endpoint._generate("s", Session(), [{"role": "user", "content": "q"}], [], body, None))
    asked = engine.asked[-1]
    assert (asked.temperature, asked.max_new_tokens) == ((1.0, 64) if training else (0.0, 5))
