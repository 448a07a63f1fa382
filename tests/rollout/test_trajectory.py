"""Token trajectories from the real vLLM engine: exact ids, mask on sampled tokens only."""
import pytest

from toolmaster.agent.loop import run_episodes
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.protocol import render_text
from toolmaster.tools.base import ToolRunner


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from toolmaster.rollout.vllm_engine import VLLMPolicy

    cfg = build_config({}, ["eval.generation.max_new_tokens=24", "eval.generation.temperature=1.0"])
    return VLLMPolicy(tiny_model_dir, cfg.eval.generation, seed=0)


def _runs(mask):
    runs, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_multi_turn_mask_and_retokenization(engine, cfg, sandbox):
    env = make_env(cfg.env)
    tasks = env.tasks("test", 4)
    episodes = run_episodes(engine, tasks, env, ToolRunner(sandbox), max_turns=3)
    tok = engine.tokenizer
    for ep in episodes:
        traj = engine.pop_trajectory(ep.episode_id)
        assert len(traj.token_ids) == len(traj.loss_mask) == len(traj.logprobs)
        assert ep.stats["turns"] >= 2  # untrained: no answer, so several turns with observations
        # the trajectory ends with the policy's last turn (observations after it were never seen by it)
        last = max(i for i, m in enumerate(ep.messages) if m["role"] == "assistant")
        rendered = render_text(ep.messages[: last + 1], ep.tools)
        assert tok.decode(traj.token_ids) + "\n" == rendered
        assistant = [m["content"] for m in ep.messages if m["role"] == "assistant"]
        runs = _runs(traj.loss_mask)
        assert len(runs) == len(assistant)
        for (lo, hi), content in zip(runs, assistant):
            sampled = tok.decode(traj.token_ids[lo:hi])
            assert sampled in (content, content + "<|im_end|>")
            assert all(lp <= 0.0 for lp in traj.logprobs[lo:hi])
        masked_out = tok.decode([t for t, m in zip(traj.token_ids, traj.loss_mask) if not m])
        for m in ep.messages:
            if m["role"] == "tool":
                assert m["content"] in masked_out
        assert all(lp == 0.0 for lp, m in zip(traj.logprobs, traj.loss_mask) if not m)
