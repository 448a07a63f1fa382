"""GRPO on StableToolBench-format queries of your own: two steps through the real engines on a train split
written here, the tools served by the tool server (a cache, then a scripted MirrorAPI-style simulator
endpoint, then the fallback), and evaluation on the disjoint test split."""
import json
import time

import httpx

from tests.fakes import FakeOpenAI
from tests.stabletoolbench_data import FIXTURE, write_queries
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.evaluation.runner import evaluate
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.toolserver.mirrorapi import load_system_prompt
from toolmaster.toolserver.process import ServerProcess
from toolmaster.trainer.grpo import start_grpo

LONG = "high tide 06:12 " * 200  # a 3200-character response: StableToolBench's inference cuts it to 1024


def test_two_grpo_steps_on_a_stabletoolbench_train_split_then_evaluation_on_the_test_split(
        fleets, tmp_path, tiny_model_dir):
    queries = tmp_path / "queries"
    write_queries(queries / "tides.json", range(1, 11))
    cache = tmp_path / "cache" / "Travel" / "sky_tides_for_Travel"
    cache.mkdir(parents=True)
    (cache / "get_tide_times.json").write_text(json.dumps({str({"harbour": "Brest"}): {"error": "",
                                                                                      "response": "cached"}}))
    with FakeOpenAI(lambda messages: json.dumps({"error": "", "response": LONG})) as simulator:
        server_cfg = build_config(TINY, [
            "env.tool_server.port=0", "env.tool_server.backends=[cache,simulator,fallback]",
            f"env.tool_server.cache_dir={tmp_path / 'cache'}", f"env.tool_server.docs=[{queries}]",
            f"env.tool_server.simulator.base_url={simulator.base_url}", "env.tool_server.simulator.max_retries=0",
            f"env.tool_server.stabletoolbench_dir={FIXTURE / 'checkout'}",
            f"env.tool_server.tools_dir={FIXTURE / 'tools'}"]).env.tool_server
        with ServerProcess(server_cfg) as server:
            cfg = build_config(TINY, [
                f"run_dir={tmp_path / 'run'}", "env.name=stabletoolbench", f"env.stabletoolbench.queries={queries}",
                "env.stabletoolbench.test_fraction=0.4", f"env.tool_server.url={server.url}",
                "grpo.steps=2", "grpo.prompts_per_step=2", "grpo.group_size=2", "learner.zero_stage=2",
                "env.max_turns=2", "rollout.generation.max_new_tokens=128", "eval.generation.max_new_tokens=128",
                # random-ish weights rarely write a call: decode under the tool-call constraint so calls happen
                "rollout.generation.constrain=tool_calls", "eval.generation.constrain=tool_calls",
                "eval.split=test", "eval.num_tasks=2", "eval.policy=model", f"eval.model={tiny_model_dir}"])
            env = make_env(cfg.env)
            train_ids = {t.id for t in env.tasks("train")}
            test_ids = {t.id for t in env.tasks("test")}
            assert (len(train_ids), len(test_ids)) == (6, 4) and not train_ids & test_ids

            fleet = fleets.get(cfg, tiny_model_dir)
            started = time.time()
            trainer = start_grpo(cfg, tiny_model_dir, fleet=fleet)
            records = []
            try:
                for _ in range(2):
                    trainer.step()
                    records += trainer.last_records
            finally:
                trainer.close()
            assert len(records) == 8 and all(r.error is None for r in records)
            assert {r.task_id for r in records} <= train_ids

            report = evaluate(cfg, tmp_path / "eval", pool=fleet.pool)
            assert report["num_items"] == 2 and {i["task_id"] for i in report["items"]} <= test_ids
            counts = httpx.get(server.url + "/health").json()["counts"]
            print(f"GRPO 2 steps + evaluation: {time.time() - started:.1f} s; tool server counts {counts}")

    served = counts.get("cache_hit", 0) + counts.get("simulator_hit", 0)
    assert served >= 1, counts  # the episodes' calls reached the server and were answered by it
    system = load_system_prompt(FIXTURE / "checkout")
    for messages in simulator.requests:  # every simulator request in MirrorAPI's format
        assert messages[0] == {"role": "system", "content": system}
        assert messages[1]["content"].startswith("API doc:\n{'api_name': 'get_tide_times', ")
        assert "\n\nRequest:\n{" in messages[1]["content"]
    observations = [m["content"] for r in records for m in r.messages if m["role"] == "tool"]
    simulated = [o for o in observations if "high tide" in o]
    assert all(len(o) == 1027 and o.endswith("...") for o in simulated)  # cut as StableToolBench's inference
