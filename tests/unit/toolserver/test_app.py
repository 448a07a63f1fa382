"""The tool server through FastAPI's TestClient: backends in order, write-back, auth, validation, health."""
import json

import pytest
from fastapi.testclient import TestClient

from tests.conftest import DATA
from tests.fakes import FakeOpenAI
from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.toolserver.app import create_app
from toolmaster.toolserver.docs import DocRegistry
from toolmaster.toolserver.names import cache_path_parts, function_name, standardize

STB = DATA / "stabletoolbench" / "test_instruction"
BODY = {"category": "Data", "tool_name": "TheClique", "api_name": "Songkick concert",
        "tool_input": json.dumps({"id_conc": "lumineers"}), "strip": "", "toolbench_key": ""}


def server_cfg(*overrides):
    return build_config(TINY, [f"env.tool_server.docs=[{STB / 'G1_instruction.json'}]", *overrides]).env.tool_server


def test_names_follow_stabletoolbench():
    assert standardize("Songkick concert") == "songkick_concert"
    assert standardize("  9gag--Trending!") == "get_9gag_trending"
    assert function_name("TheClique", "Songkick concert") == "songkick_concert_for_theclique"
    assert cache_path_parts("News, Media", "TheClique", "id") == ("News_Media", "theclique_for_News_Media", "is_id")
    # a client may send the agent-side function name as the api name
    assert cache_path_parts("Data", "TheClique", "songkick_concert_for_theclique")[2] == "songkick_concert"


def test_fallback_is_deterministic_and_follows_the_template():
    client = TestClient(create_app(server_cfg()))
    first = client.post("/virtual", json=BODY).json()
    assert first["error"] == "" and set(json.loads(first["response"])) >= {"date", "line_up", "venue_name"}
    assert client.post("/virtual", json=BODY).json() == first
    other = client.post("/virtual", json={**BODY, "tool_input": {"id_conc": "another"}}).json()
    assert other != first  # derived from the input
    unknown = client.post("/virtual", json={**BODY, "api_name": "no such api"}).json()
    assert "unknown API" in unknown["error"]


def test_cache_hit_miss_and_write_back_of_simulated_responses(tmp_path):
    replies = iter([json.dumps({"error": "", "response": "concert on 2024-05-01"})] * 10)
    with FakeOpenAI(lambda messages: next(replies)) as fake:
        cfg = server_cfg("env.tool_server.backends=[cache,simulator,fallback]", f"env.tool_server.cache_dir={tmp_path}",
                         f"env.tool_server.simulator.base_url={fake.base_url}")
        client = TestClient(create_app(cfg))
        miss = client.post("/virtual", json=BODY).json()
        assert miss == {"error": "", "response": "concert on 2024-05-01"}
        assert len(fake.requests) == 1 and "Songkick concert" in fake.requests[0][1]["content"]  # the API doc
        cache_file = tmp_path / "Data" / "theclique_for_Data" / "songkick_concert.json"
        assert json.loads(cache_file.read_text()) == {str({"id_conc": "lumineers"}): miss}  # StableToolBench keying
        assert client.post("/virtual", json=BODY).json() == miss
        assert len(fake.requests) == 1  # the second call was a cache hit
        counts = client.get("/health").json()["counts"]
        assert counts["cache_hit"] == 1 and counts["cache_miss"] == 1 and counts["simulator_hit"] == 1
        # a fresh server reads the same file: the write-back persisted
        assert TestClient(create_app(cfg)).post("/virtual", json=BODY).json() == miss
        assert len(fake.requests) == 1


def test_simulator_down_falls_through_to_fallback(tmp_path):
    cfg = server_cfg("env.tool_server.backends=[simulator,fallback]", "env.tool_server.simulator.base_url=http://127.0.0.1:9/v1",
                     "env.tool_server.simulator.max_retries=0", "env.tool_server.simulator.timeout_s=2")
    client = TestClient(create_app(cfg))
    reply = client.post("/virtual", json=BODY).json()
    assert reply["error"] == "" and "venue_name" in reply["response"]
    assert client.get("/health").json()["counts"] == {"simulator_miss": 1, "fallback_hit": 1}


def test_auth_and_validation():
    client = TestClient(create_app(server_cfg("env.tool_server.api_keys=[secret]")))
    assert client.post("/virtual", json=BODY).status_code == 401
    assert client.post("/virtual", json={**BODY, "toolbench_key": "secret"}).status_code == 200
    assert client.post("/virtual", json=BODY, headers={"Authorization": "Bearer secret"}).status_code == 200
    bad = client.post("/virtual", json={**BODY, "toolbench_key": "secret", "tool_input": "{not json"})
    assert bad.status_code == 422 and "tool_input is not valid JSON" in bad.text
    missing = client.post("/virtual", json={"category": "Data", "toolbench_key": "secret"})
    assert missing.status_code == 422 and "tool_name" in missing.text
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["docs"] > 0 and health["counts"]["unauthorized"] == 1


def test_config_rejects_unconfigured_backends():
    from toolmaster.config import ConfigError
    with pytest.raises(ConfigError, match="simulator.base_url is not set"):
        server_cfg("env.tool_server.backends=[simulator]")
    with pytest.raises(ConfigError, match="cache_dir is not set"):
        server_cfg("env.tool_server.backends=[cache,fallback]")


def test_docs_load_every_benchmark_api():
    registry = DocRegistry.from_paths([str(STB), str(DATA / "restbench" / "tmdb_oas.json")])
    assert registry.get("OpenAPI", "tmdb", "GET /search/person")["path"] == "/search/person"
    assert registry.get("Data", "TheClique", "Songkick concert")["template_response"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DocRegistry.from_paths(["/no/such/docs"])


@pytest.mark.parametrize("field,value", [("category", ".."), ("category", "Data\\..\\.."), ("tool_name", "../../etc"),
                                         ("tool_name", "x_for_Data/../../../tmp"), ("api_name", "a\x00b"),
                                         ("tool_name", ".."), ("category", "Data_for_..")])
def test_traversal_in_names_is_refused_and_touches_nothing(tmp_path, field, value):
    cache = tmp_path / "cache"
    cache.mkdir()
    secret = tmp_path / "secret.json"  # a JSON file beside the cache that a traversal would read
    secret.write_text(json.dumps({str({}): {"error": "", "response": "leaked"}}))
    replies = iter([json.dumps({"error": "", "response": "simulated"})] * 10)
    with FakeOpenAI(lambda messages: next(replies)) as fake:
        cfg = server_cfg("env.tool_server.backends=[cache,simulator,fallback]", f"env.tool_server.cache_dir={cache}",
                         f"env.tool_server.simulator.base_url={fake.base_url}")
        client = TestClient(create_app(cfg))
        before = sorted(p for p in tmp_path.rglob("*"))
        reply = client.post("/virtual", json={**BODY, field: value, "tool_input": "{}"})
        after = sorted(p for p in tmp_path.rglob("*"))
    if reply.status_code == 200:  # normalization made it a plain name: it stayed inside the cache
        assert "leaked" not in reply.text
        assert all(p == secret or cache in p.parents or p == cache for p in after)
    else:
        assert reply.status_code == 422 and "not a plain name" in reply.text
        assert before == after and not fake.requests
    assert secret.read_text().count("leaked") == 1


def test_cache_backend_refuses_paths_outside_even_when_called_directly(tmp_path):
    from toolmaster.toolserver.backends import CacheBackend, PathOutsideCache

    backend = CacheBackend(str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "Data").symlink_to(tmp_path)  # a symlink inside the cache that leads out
    with pytest.raises(PathOutsideCache):
        backend._file(("Data", "x_for_Data", "api"))
    with pytest.raises(PathOutsideCache):
        backend._file(("..", "x", "api"))


def test_oversized_bodies_and_tool_inputs_are_413():
    client = TestClient(create_app(server_cfg("env.tool_server.max_body_bytes=4096",
                                              "env.tool_server.max_tool_input_chars=100")))
    huge = client.post("/virtual", json={**BODY, "tool_input": json.dumps({"x": "y" * 10_000})})
    assert huge.status_code == 413 and "over 4096 bytes" in huge.text
    chunked = client.post("/virtual", content=iter([json.dumps(BODY).encode()[:10], b" " * 8192]),
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    wide = client.post("/virtual", json={**BODY, "tool_input": json.dumps({"x": "y" * 200})})
    assert wide.status_code == 413 and "tool_input over 100" in wide.text
    assert client.post("/virtual", json=BODY).status_code == 200
    assert client.get("/health").json()["counts"]["too_large"] == 3


def test_serving_beyond_loopback_without_keys_warns():
    from toolmaster.toolserver.process import open_to_network

    assert open_to_network(server_cfg("env.tool_server.host=127.0.0.1")) is None
    assert open_to_network(server_cfg("env.tool_server.host=0.0.0.0", "env.tool_server.api_keys=[k]")) is None
    assert "beyond loopback" in open_to_network(server_cfg("env.tool_server.host=0.0.0.0"))
