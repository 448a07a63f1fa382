"""Token trajectories from a real rollout worker (Ray actor, vLLM async engine): exact ids, mask on
sampled tokens only, many episodes in flight at once."""
import ray

from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.protocol import render_text


def _runs(mask):
    runs, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_multi_turn_mask_and_retokenization(ray_local, tiny_model_dir):
    from transformers import AutoTokenizer

    from toolmaster.rollout.pool import RolloutPool

    cfg = build_config({}, ["rollout.generation.max_new_tokens=24", "env.max_turns=3", "rollout.num_workers=1"])
    tasks = make_env(cfg.env).tasks("test", 4)
    pool = RolloutPool(cfg, tiny_model_dir)
    try:
        records = pool.run(tasks, group_size=2, step=0)
        worker = next(iter(pool.workers.values()))
        peak = ray.get(worker.stats.remote())["peak_episodes_in_flight"]
    finally:
        pool.shutdown()
    assert [r["episode_id"] for r in records] == [f"s0-t{i}-g{g}" for i in range(4) for g in range(2)]
    assert peak == 8  # all eight episodes shared the one engine at once
    assert not pool.assignment  # every assignment was released
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for rec in records:
        ids, mask, logprobs, messages = rec["token_ids"], rec["loss_mask"], rec["logprobs"], rec["messages"]
        assert len(ids) == len(mask) == len(logprobs)
        assert rec["stats"]["turns"] >= 2  # untrained: no answer, so several turns with observations
        assert rec["policy_version"] == 0 and rec["timings"]["generate"] > 0
        # the trajectory ends with the policy's last turn (observations after it were never seen by it)
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        tools = next(t for t in tasks if t.id == rec["task_id"]).schemas
        assert tok.decode(ids) + "\n" == render_text(messages[: last + 1], tools)
        assistant = [m["content"] for m in messages if m["role"] == "assistant"]
        runs = _runs(mask)
        assert len(runs) == len(assistant)
        for (lo, hi), content in zip(runs, assistant):
            assert tok.decode(ids[lo:hi]) in (content, content + "<|im_end|>")
            assert all(lp <= 0.0 for lp in logprobs[lo:hi])
        masked_out = tok.decode([t for t, m in zip(ids, mask) if not m])
        for m in messages:
            if m["role"] == "tool":
                assert m["content"] in masked_out
        assert all(lp == 0.0 for lp, m in zip(logprobs, mask) if not m)
