"""The MirrorAPI-compatible simulator: the messages StableToolBench's server sends, its reply parsing, and
StableToolBench's observation truncation.

The expected strings below were written by hand by following THUNLP-MT/StableToolBench at commit
aa4ed9f4737ad98bd706663f01d63623c3427812: server/main_mirrorapi_cache.py (prepare_tool_name_and_url,
get_virtual_response, fake_response_function_with_trained_simulator, extract_attributes_json), server/utils.py
(standardize, change_name), server/config_mirrorapi_cache.yml (temperature 0.1) and
toolbench/inference/Downstream_tasks/rapidapi.py (rapidapi_wrapper.step's truncation). The system prompt is a
fixture (tests/fixtures/stabletoolbench/checkout/server/system_prompts.py), not StableToolBench's text.
"""
import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeOpenAI
from toolmaster.config import build_config
from toolmaster.config_base import ConfigError
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.toolserver import client as client_module
from toolmaster.toolserver.app import create_app
from toolmaster.toolserver.mirrorapi import FAILED, load_system_prompt, parse_reply

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "stabletoolbench"
CHECKOUT, TOOLS = FIXTURE / "checkout", FIXTURE / "tools"

# SFT_SYSTEM of the fixture checkout, as Python reads the literal
SYSTEM = ('FIXTURE simulator prompt.\nPlay the API described below; answer the request as {"error": "", '
          '"response": ""}.\nQuotes \' and " and a backslash \\ survive.')

# The user turn for the call below, following the upstream code by hand: category "Travel" (standardized:
# unchanged); tool_name "sky_tides" has no "_for_", so the doc's tool_name is it as sent and the tools file is
# tools/Travel/sky_tides.json; api_name change_name(standardize("get_tide_times")) = "get_tide_times" matches
# standardize("Get Tide Times"); api_doc is a dict in this key order, then USER_PROMPT.format puts in the
# Python reprs of api_doc and of the request (tool_input less toolbench_key).
USER = (
    "API doc:\n"
    "{'api_name': 'get_tide_times', 'api_description': 'Tide times for a harbour, for the next days.', "
    "'required_parameters': [{'name': 'harbour', 'type': 'STRING', 'description': 'harbour name', "
    "'default': 'Brest'}], 'optional_parameters': [{'name': 'days', 'type': 'NUMBER', 'description': '', "
    "'default': '2'}], 'tool_description': \"Harbour tide tables; it's a fixture tool for ToolMaster's tests "
    "(Brést, Saint-Malo).\", 'tool_name': 'sky_tides', 'tool_category': 'Travel'}\n"
    "\n"
    "Request:\n"
    "{'harbour': 'Brest', 'days': 3}"
)
BODY = {"category": "Travel", "tool_name": "sky_tides", "api_name": "get_tide_times",
        "tool_input": json.dumps({"harbour": "Brest", "days": 3}), "strip": "", "toolbench_key": ""}


def server_cfg(base_url, *overrides):
    return build_config(TINY, [
        "env.tool_server.docs=[]", "env.tool_server.backends=[simulator,fallback]",
        f"env.tool_server.simulator.base_url={base_url}", "env.tool_server.simulator.model=mirror",
        f"env.tool_server.stabletoolbench_dir={CHECKOUT}", f"env.tool_server.tools_dir={TOOLS}", *overrides,
    ]).env.tool_server


def test_the_system_prompt_is_read_from_the_checkout_without_running_it(tmp_path):
    assert load_system_prompt(CHECKOUT) == SYSTEM
    assert load_system_prompt(CHECKOUT, "COT_SYSTEM").startswith("FIXTURE chain-of-thought")
    with pytest.raises(ConfigError, match="defines no SFT_SYSTEM"):
        (tmp_path / "server").mkdir()
        (tmp_path / "server" / "system_prompts.py").write_text("OTHER = 'x'\n")
        load_system_prompt(tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_system_prompt(tmp_path / "nowhere")


def test_the_messages_equal_stabletoolbenchs_character_for_character():
    reply = json.dumps({"error": "", "response": "{'tides': ['06:12', '18:40']}"})
    with FakeOpenAI(lambda messages: reply) as fake:
        client = TestClient(create_app(server_cfg(fake.base_url)))
        answer = client.post("/virtual", json=BODY).json()
        assert fake.requests[0] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
        body = fake.bodies[0]
        assert (body["model"], body["temperature"], body["max_tokens"], body["seed"]) == ("mirror", 0.1, 2048, 42)
        assert answer == {"error": "", "response": "{'tides': ['06:12', '18:40']}"}

        # the raw names and a toolbench_key inside the input: the doc names the tool as sent, the key is dropped
        raw = {**BODY, "tool_name": "Sky Tides", "api_name": "Get Tide Times",
               "tool_input": {"harbour": "Brest", "days": 3, "toolbench_key": "k"}}
        client.post("/virtual", json=raw)
        assert fake.requests[1][1]["content"] == USER.replace("'tool_name': 'sky_tides'", "'tool_name': 'Sky Tides'")

        # "id" becomes "is_id" (change_name), which matches no api of the file: that server has no doc for it
        # (it fails the request); here the next backend answers
        answer = client.post("/virtual", json={**BODY, "api_name": "id", "tool_input": ""}).json()
        assert len(fake.requests) == 2 and answer["error"] == ""
        assert client.get("/health").json()["counts"] == {"simulator_hit": 2, "simulator_miss": 1, "fallback_hit": 1}


def test_a_cache_hit_never_reaches_the_simulator(tmp_path):
    cache = tmp_path / "Travel" / "sky_tides_for_Travel"
    cache.mkdir(parents=True)
    (cache / "get_tide_times.json").write_text(json.dumps({str({"harbour": "Brest", "days": 3}):
                                                           {"error": "", "response": "cached"}}))
    with FakeOpenAI(lambda messages: '{"error": "", "response": "simulated"}') as fake:
        cfg = server_cfg(fake.base_url, "env.tool_server.backends=[cache,simulator,fallback]",
                         f"env.tool_server.cache_dir={tmp_path}")
        client = TestClient(create_app(cfg))
        assert client.post("/virtual", json=BODY).json()["response"] == "cached"
        assert client.post("/virtual", json={**BODY, "tool_input": '{"harbour": "Roscoff"}'}).json()["response"] \
            == "simulated"
        assert len(fake.requests) == 1
        # the simulated response is written back, keyed as StableToolBench keys its cache
        assert json.loads((cache / "get_tide_times.json").read_text())[str({"harbour": "Roscoff"})] == \
            {"error": "", "response": "simulated"}


@pytest.mark.parametrize("text,expected", [
    ('{"error": "", "response": "ok"}', {"error": "", "response": "ok"}),
    ('{"error": "", "response": {"a": 1}}', {"error": "", "response": {"a": 1}}),  # kept as the JSON gave it
    ('{"error": "Invalid harbour", "response": ""}', {"error": "Invalid harbour", "response": ""}),
    # not JSON: the regular expression, whose response runs to the end of the text (closing quote included)
    ('{"error": "", "response": "cut off', {"error": "", "response": "cut off"}),
    ('x {"error": "", "response": "a"}', {"error": "", "response": 'a"}'}),
    # the chain-of-thought format, not JSON
    ('{"mechanism_of_the_api": "looks up", "error": "", "response": "r\n', {"error": "", "response": "r\n"}),
    ('{"error": "", "response": ""}', FAILED),  # neither: its failure
    ("plain text", FAILED),
    ('{"response": "no error key"}', FAILED),  # the server would raise; the same failure here
    ("[1, 2]", FAILED),
])
def test_replies_are_parsed_as_stabletoolbench_parses_them(text, expected):
    assert parse_reply(text) == expected


def test_a_mirrorapi_simulator_needs_the_checkout_and_the_tools(tmp_path):
    with pytest.raises(ConfigError, match="needs stabletoolbench_dir"):
        build_config(TINY, ["env.tool_server.backends=[simulator]", "env.tool_server.simulator.base_url=http://x/v1",
                            "env.tool_server.simulator_format=mirrorapi"])
    generic = build_config(TINY, ["env.tool_server.backends=[simulator]",
                                  "env.tool_server.simulator.base_url=http://x/v1"]).env.tool_server
    assert generic.simulator_format == "generic"  # auto without a checkout: this project's prompt (OpenAPI docs)
    assert server_cfg("http://x/v1").simulator_format == "mirrorapi"


def test_observations_are_cut_as_stabletoolbenchs_inference_cuts_them(monkeypatch):
    long = "é" * 1500
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"error": "", "response": long}))
    monkeypatch.setattr(client_module, "_client",
                        lambda url, timeout, *_: httpx.Client(base_url=url, transport=transport))
    result = client_module.call_virtual("http://tools", "Travel", "sky_tides", "get_tide_times", {},
                                        max_observation_chars=1024)
    full = json.dumps({"error": "", "response": long})  # rapidapi.py: json.dumps(response), ASCII escapes
    assert result.ok and result.content == full[:1024] + "..." and len(result.content) == 1027
    short = client_module.call_virtual("http://tools", "Travel", "sky_tides", "get_tide_times", {},
                                       max_observation_chars=10_000)
    assert short.content == full  # not cut: nothing appended
    assert client_module.truncate_observation("abc", 3) == "abc" and client_module.truncate_observation("abcd", 3) \
        == "abc..."
