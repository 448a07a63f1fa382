"""The simulator backend against a real OpenAI-compatible server: vLLM serving the tiny model."""
import json

from fastapi.testclient import TestClient

from tests.unit.toolserver.test_app import BODY, server_cfg
from toolmaster.toolserver.app import create_app


def test_simulator_backend_through_a_vllm_openai_server(model_server, tmp_path):
    cfg = server_cfg("env.tool_server.backends=[cache,simulator]", f"env.tool_server.cache_dir={tmp_path}",
                     f"env.tool_server.simulator.base_url={model_server.base_url}",
                     "env.tool_server.simulator.model=tiny", "env.tool_server.simulator.max_tokens=24")
    client = TestClient(create_app(cfg))
    first = client.post("/virtual", json=BODY).json()
    assert set(first) == {"error", "response"} and first["response"]  # the tiny model's text, whatever it says
    counts = client.get("/health").json()["counts"]
    assert counts == {"cache_miss": 1, "simulator_hit": 1}
    assert first["error"] == ""  # free text from the model is taken as the response body
    cached = json.loads((tmp_path / "Data" / "theclique_for_Data" / "songkick_concert.json").read_text())
    assert list(cached.values()) == [first]  # written back ...
    assert client.post("/virtual", json=BODY).json() == first  # ... and served from the cache
    assert client.get("/health").json()["counts"]["cache_hit"] == 1
