"""The OpenAI-compatible client: requests as the endpoint sees them, and errors that name the endpoint."""
import pytest

from tests.fakes import FakeOpenAI
from toolmaster.config import build_config
from toolmaster.llm.client import ChatClient, EndpointError
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.toolserver.backends import parse_simulated


def test_chat_round_trip_and_unreachable_endpoint():
    with FakeOpenAI(lambda messages: "pong:" + messages[-1]["content"]) as fake:
        cfg = build_config(TINY, [f"synth.endpoint.base_url={fake.base_url}", "synth.endpoint.model=m"]).synth.endpoint
        assert ChatClient(cfg).chat([{"role": "user", "content": "ping"}]) == "pong:ping"
    dead = build_config(TINY, ["synth.endpoint.base_url=http://127.0.0.1:9/v1", "synth.endpoint.max_retries=0",
                             "synth.endpoint.timeout_s=2"]).synth.endpoint
    with pytest.raises(EndpointError, match="127.0.0.1:9"):
        ChatClient(dead).chat([{"role": "user", "content": "ping"}])
    with pytest.raises(ValueError, match="no base_url"):
        ChatClient(build_config(TINY).synth.endpoint)


def test_simulated_replies_become_responses():
    assert parse_simulated('{"error": "", "response": "ok"}') == {"error": "", "response": "ok"}
    assert parse_simulated('```json\n{"error": "", "response": {"a": 1}}\n```') == {"error": "", "response": '{"a": 1}'}
    assert parse_simulated("plain words") == {"error": "", "response": "plain words"}
    assert parse_simulated('{"a": 1}') == {"error": "", "response": '{"a": 1}'}
    assert parse_simulated("   ") is None
