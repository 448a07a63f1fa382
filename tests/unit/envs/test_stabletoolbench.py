"""StableToolBench: the 765 queries as tasks, the Finish convention, SoPR from a judge (or not computed)."""
import json
import re

import pytest

from tests.fakes import FakeOpenAI
from toolmaster.agent.loop import run_episodes
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.evaluation.runner import evaluate
from toolmaster.llm.judge import parse_label
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.tools.base import ToolRunner
from toolmaster.toolserver.process import tool_server_for

GROUPS = {"G1_instruction": 163, "G1_category": 153, "G1_tool": 158, "G2_instruction": 106, "G2_category": 124,
          "G3_instruction": 61}
NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def test_all_765_queries_load_with_valid_tool_schemas():
    env = make_env(build_config(TINY, ["env.name=stabletoolbench"]).env)
    tasks = env.tasks("test")
    assert len(tasks) == 765
    assert {g: sum(t.metadata["group"] == g for t in tasks) for g in GROUPS} == GROUPS
    for task in tasks:
        names = [s["name"] for s in task.schemas]
        assert names[-1] == "Finish" and len(set(names)) == len(names) and len(names) >= 2
        for schema in task.schemas:
            assert NAME.match(schema["name"]), schema["name"]
            params = schema["parameters"]
            assert params["type"] == "object" and set(params["required"]) <= set(params["properties"])
            assert all(p["type"] in ("string", "number", "integer", "boolean", "array", "object")
                       for p in params["properties"].values())


class FirstApiThenFinish:
    """Calls the first API with its example values, then Finish with the observation's first characters."""

    def generate(self, requests):
        out = []
        for r in requests:
            if r.messages[-1]["role"] == "tool":
                args = {"return_type": "give_answer", "final_answer": r.messages[-1]["content"][:40]}
                out.append(f'<tool_call>\n{json.dumps({"name": "Finish", "arguments": args})}\n</tool_call>')
            else:
                schema = r.task.schemas[0]
                args = {k: v.get("example_value", "x") for k, v in schema["parameters"]["properties"].items()
                        if k in schema["parameters"]["required"]}
                out.append(f'<tool_call>\n{json.dumps({"name": schema["name"], "arguments": args})}\n</tool_call>')
        return out


def test_eval_without_judge_reports_finish_rate_and_sopr_not_computed(tmp_path):
    cfg = build_config(TINY, ["env.name=stabletoolbench", "eval.num_tasks=4", "eval.policy=oracle"])
    report = evaluate(cfg, tmp_path, policy=FirstApiThenFinish())  # starts its own tool server
    assert report["sopr"] is None and "no judge configured" in report["note"]
    assert report["finish_rate"] == 1.0 and report["num_items"] == 4
    item = report["items"][0]
    assert item["calls"][-1] == "Finish" and item["answer"].startswith('{"error"')  # the server's reply reached it
    assert "not computed" in (tmp_path / "report.md").read_text() and (tmp_path / "report.png").stat().st_size > 0


def test_judge_labels_are_averaged_and_no_finish_is_unsolved(tmp_path):
    assert parse_label("the answer names the venue.\nLabel: Solved") == 1.0
    assert parse_label("Label: Unsolved") == 0.0 and parse_label("Unsure") == 0.5 and parse_label("no idea") is None
    seen = {}

    def label(messages):  # per answer: the first judgment Solved, the second Unsure (episodes are judged concurrently)
        key = messages[1]["content"]
        seen[key] = seen.get(key, 0) + 1
        return "Label: Solved" if seen[key] == 1 else "Label: Unsure"

    with FakeOpenAI(label) as judge:
        cfg = build_config(TINY, ["env.name=stabletoolbench", f"env.judge.base_url={judge.base_url}",
                                  "env.judge.runs=2"])
        with tool_server_for(cfg) as run_cfg:
            env = make_env(run_cfg.env)
            tasks = env.tasks("test", 2)
            runner = ToolRunner.from_config(run_cfg.sandbox)
            finished = run_episodes(FirstApiThenFinish(), tasks, env, runner, max_turns=4)
            unfinished = run_episodes(FirstApiThenFinish(), tasks[:1], env, runner, max_turns=1)
            runner.close()
        assert [ep.grade for ep in finished] == [0.75, 0.75]  # (Solved 1 + Unsure 0.5) / 2 runs
        assert unfinished[0].finish_reason == "max_turns" and unfinished[0].grade == 0.0
        assert len(judge.requests) == 4  # the unfinished episode was not sent to the judge
        assert {t.question for t in tasks} == {r[1]["content"].split("\n")[0].removeprefix("Query: ")
                                               for r in judge.requests}
    assert env.metric_value([0.75, 0.75, 0.0]) == pytest.approx(50.0)
