"""RestBench-TMDB: tools from the OpenAPI spec, correct-path rate, live or tool-server execution."""
import re

from toolmaster.agent.episode import Episode
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.envs.tmdb import covers_in_order, endpoint_function
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.tools.base import RestExecutor, VirtualApiExecutor
from toolmaster.tools.rest import call_rest


def test_54_tools_with_valid_schemas():
    env = make_env(build_config(TINY, ["env.name=tmdb"]).env)
    tasks = env.tasks("test")
    assert len(tasks) == 100
    schemas = tasks[0].schemas
    assert len(schemas) == 54 and len({s["name"] for s in schemas}) == 54
    for s in schemas:
        assert re.match(r"^[a-z0-9_]{1,64}$", s["name"]) and s["parameters"]["type"] == "object"
        assert set(s["parameters"]["required"]) <= set(s["parameters"]["properties"])
    person = next(s for s in schemas if s["name"] == "get_person_person_id_movie_credits")
    assert (person["parameters"]["required"] == ["person_id"]
            and person["parameters"]["properties"]["person_id"]["type"] == "integer")
    search = next(s for s in schemas if s["name"] == "get_search_person")
    assert "query" in search["parameters"]["required"] and "page" in search["parameters"]["properties"]
    assert all(isinstance(t.executor, VirtualApiExecutor) for t in tasks[0].tools)  # no key here: the tool server


def test_correct_path_rate_on_hand_made_paths():
    gold = ["GET /search/person", "GET /person/{person_id}/movie_credits"]
    names = [endpoint_function(p) for p in gold]
    assert names == ["get_search_person", "get_person_person_id_movie_credits"]
    assert covers_in_order(names, names)
    assert covers_in_order(names, ["get_movie_popular", names[0], "get_search_movie", names[0], names[1]])
    assert not covers_in_order(names, [names[1], names[0]])  # wrong order
    assert not covers_in_order(names, [names[0]])  # missing a step
    assert (covers_in_order([names[0], names[0]], [names[0], names[0]])
            and not covers_in_order([names[0], names[0]], [names[0]]))
    env = make_env(build_config(TINY, ["env.name=tmdb"]).env)
    task = next(t for t in env.tasks("test") if t.metadata["solution"] == gold)
    episode = Episode("e", task.id, [], [], calls=["get_search_person", "get_person_person_id_movie_credits", "Finish"])
    assert env.grade(task, episode) == 1.0
    episode.calls = ["get_person_person_id_movie_credits"]
    assert env.grade(task, episode) == 0.0
    assert env.metric_value([1.0, 0.0, 0.0, 1.0]) == 50.0


def test_live_api_when_a_key_is_set(monkeypatch):
    monkeypatch.setenv("TMDB_API_KEY", "k")
    tools = make_env(build_config(TINY, ["env.name=tmdb"]).env).tasks("test", 1)[0].tools
    assert all(isinstance(t.executor, RestExecutor) for t in tools)
    monkeypatch.delenv("TMDB_API_KEY")
    ex = next(t.executor for t in tools if t.name == "get_person_person_id_movie_credits")
    assert "TMDB_API_KEY" in call_rest(ex, {"person_id": 1}).content  # key read where the call runs
    monkeypatch.setenv("TMDB_API_KEY", "k")
    assert "missing path parameter(s) person_id" in call_rest(ex, {}).content


def test_success_rate_from_a_judge_beside_the_path_metric(tmp_path):
    from tests.fakes import FakeOpenAI
    from toolmaster.evaluation.runner import evaluate

    class SearchThenAnswer:
        def generate(self, requests):
            return ["<answer>7 films</answer>" if r.messages[-1]["role"] == "tool" else
                    '<tool_call>\n{"name": "get_search_person", "arguments": {"query": "Sofia Coppola"}}\n</tool_call>'
                    for r in requests]

    with FakeOpenAI(lambda messages: "Label: Solved" if "7 films" in messages[1]["content"]
                    else "Label: Unsolved") as judge:
        cfg = build_config(TINY, ["env.name=tmdb", "eval.num_tasks=2", f"env.judge.base_url={judge.base_url}"])
        report = evaluate(cfg, tmp_path, policy=SearchThenAnswer())  # tool server started for the run
    assert report["success_rate"] == 100.0 and report["correct_path_rate"] == 0.0  # gold needs a second endpoint
    item = report["items"][0]
    assert item["calls"] == ["get_search_person"] and item["judgments"] == {"success": 1.0}
    assert item["finish_reason"] == "answer"
    assert "success_rate" in (tmp_path / "report.md").read_text()
