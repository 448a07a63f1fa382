"""Full-state checkpoints: step directories, `latest`, keep-N, and resumed runs that continue exactly."""
import json

import pytest
import torch

from tests.integration.trainer.test_grpo import _config, _weights
from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY


class _Run:
    def __init__(self, path):
        self.path, self.states = path, []

    def save_state(self, step, state):
        self.states.append((step, state))


def test_step_checkpoints_keep_the_last_n_and_point_latest_at_the_newest(tmp_path):
    from toolmaster.trainer.checkpoints import Checkpoints

    run = _Run(tmp_path)
    ckpts = Checkpoints(run, keep=2)
    (tmp_path / "checkpoints" / "latest").mkdir(parents=True)  # a run directory from before step checkpoints
    for step in (1, 2, 3):
        path = ckpts.save(step, lambda d, s=step: (torch.save({"s": s}, f"{d}/w.pt")), {"version": step})
    assert [p.name for p in ckpts.steps()] == ["step-000002", "step-000003"]
    latest = tmp_path / "checkpoints" / "latest"
    assert latest.is_symlink() and latest.resolve().name == "step-000003" and path.endswith("step-000003")
    assert torch.load(latest / "w.pt")["s"] == 3
    assert json.loads((latest / "trainer_state.json").read_text())["version"] == 3
    assert run.states[-1][1]["checkpoint"] == path  # the run's state names the checkpoint only once complete

    def crash(d):
        torch.save({"s": 4}, f"{d}/w.pt")
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):
        ckpts.save(4, crash, {})
    assert latest.resolve().name == "step-000003" and len(run.states) == 3  # nothing half-written is visible


def test_the_best_checkpoint_outlives_pruning(tmp_path):
    from toolmaster.trainer.checkpoints import Checkpoints

    ckpts = Checkpoints(_Run(tmp_path), keep=1)
    write = lambda d: (torch.save({}, f"{d}/w.pt"))  # noqa: E731
    ckpts.save(1, write, {})
    best = ckpts.point("best", "step-000001")
    for step in (2, 3):
        ckpts.save(step, write, {})
    assert [p.name for p in ckpts.steps()] == ["step-000001", "step-000003"]  # step 2 pruned, the best kept
    assert best.resolve().name == "step-000001" and (best / "w.pt").exists()
    ckpts.point("best", str(tmp_path / "start_model"))  # the start model was best: a link out of the run
    ckpts.save(4, write, {})
    assert [p.name for p in ckpts.steps()] == ["step-000004"]
    assert best.resolve() == tmp_path / "start_model"


def _engine_files(checkpoint, names):
    engine = checkpoint / "deepspeed" / "engine"
    engine.mkdir(parents=True)
    (checkpoint / "rng").mkdir()
    for name in names:
        (engine / name).write_bytes(b"")


def test_optimizer_state_from_a_checkpoint_must_match_the_learner_layout(tmp_path):
    from toolmaster.config import ConfigError
    from toolmaster.trainer.checkpoints import check_optimizer_source

    with pytest.raises(ConfigError, match="holds no optimizer state"):
        check_optimizer_source(str(tmp_path), 2, 2)  # an exported model directory
    zero2 = tmp_path / "zero2"
    _engine_files(zero2, ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
                          "zero_pp_rank_1_mp_rank_00_optim_states.pt"])
    check_optimizer_source(str(zero2), 2, 2)
    with pytest.raises(ConfigError, match="2 learner ranks at ZeRO stage 2; this run has learner.num_ranks=4"):
        check_optimizer_source(str(zero2), 4, 2)
    zero3 = tmp_path / "zero3"
    _engine_files(zero3, [f"{p}zero_pp_rank_{r}_mp_rank_00_{k}_states.pt" for r in (0, 1)
                          for p, k in (("", "model"), ("bf16_", "optim"))])
    check_optimizer_source(str(zero3), 2, 3)
    with pytest.raises(ConfigError, match="ZeRO stage 3; this run has learner.num_ranks=2, learner.zero_stage=2"):
        check_optimizer_source(str(zero3), 2, 2)


def test_sft_resume_after_a_crash_is_exact(ray_local, tiny_model_dir, tmp_path, monkeypatch):
    """4 steps uninterrupted vs 2 steps, a crash in step 3, `--resume` on learners of its own, 2 steps: the
    same weights (fp32). The first two runs share the integration tier's learners (reset to a fresh start)."""
    from tests.integration.fleets import FLEETS
    from toolmaster.learner.group import LearnerGroup
    from toolmaster.teacher.synth import synthesize
    from toolmaster.trainer.sft import train_sft

    synthesize(build_config(TINY, ["synth.num_tasks=12"]), tmp_path / "data")

    def cfg(run):
        return build_config(TINY, [f"run_dir={tmp_path / run}", "sft.steps=4", "sft.batch_size=4", "sft.warmup_steps=1",
                                 "sft.checkpoint_every=2", "sft.keep_checkpoints=1"])

    shared = FLEETS.get(cfg("full"), tiny_model_dir).learners
    train_sft(cfg("full"), tiny_model_dir, str(tmp_path / "data"), learners=shared)
    calls, original = [], LearnerGroup.train_step

    def crashing(self, batch, kind):
        calls.append(kind)
        if len(calls) == 3:
            raise RuntimeError("killed during step 3")
        return original(self, batch, kind)

    monkeypatch.setattr(LearnerGroup, "train_step", crashing)
    with pytest.raises(RuntimeError, match="step 3"):
        train_sft(cfg("resumed"), tiny_model_dir, str(tmp_path / "data"), learners=shared)
    monkeypatch.undo()
    assert (tmp_path / "resumed" / "checkpoints" / "latest").resolve().name == "step-000002"
    train_sft(cfg("resumed"), tiny_model_dir, str(tmp_path / "data"), resume=True)
    full, resumed = _weights(tmp_path / "full/checkpoints/latest"), _weights(tmp_path / "resumed/checkpoints/latest")
    assert max((full[k] - resumed[k]).abs().max().item() for k in full) < 1e-6
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").glob("step-*")] == ["step-000004"]  # keep 1
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # step 3 crashed before it was logged


def test_grpo_resume_after_a_crash_trains_on_the_same_episodes(ray_local, tiny_model_dir, tmp_path, monkeypatch):
    """4 GRPO steps uninterrupted vs 2, a crash in step 3, `--resume` on a fleet of its own, 2: the same tasks
    and episode ids, and (per-episode sampling seeds, restored optimizer state) the same weights. The first two
    runs share the integration tier's fleet (reset to a fresh start)."""
    from tests.integration.fleets import FLEETS
    from toolmaster.trainer.grpo import GRPOTrainer, train_grpo

    def cfg(run):
        return _config(tmp_path / run, 2, steps=4, extra=["grpo.checkpoint_every=1", "grpo.keep_checkpoints=2"])

    shared = FLEETS.get(cfg("full"), tiny_model_dir)
    train_grpo(cfg("full"), tiny_model_dir, fleet=shared)
    original = GRPOTrainer._train

    def crashing(self, batch):
        if self.step_index == 2:
            raise RuntimeError("killed during step 3")
        return original(self, batch)

    monkeypatch.setattr(GRPOTrainer, "_train", crashing)
    with pytest.raises(RuntimeError, match="step 3"):
        train_grpo(cfg("resumed"), tiny_model_dir, fleet=shared)
    monkeypatch.undo()
    train_grpo(cfg("resumed"), tiny_model_dir, resume=True)

    def logged(run):
        return {r["step"]: (r["task_ids"], r["episode_ids"], r["reward"]) for r in
                map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())}

    full, resumed = logged("full"), logged("resumed")
    assert sorted(resumed) == [1, 2, 3, 4]
    assert all(full[s][:2] == resumed[s][:2] for s in full)  # same tasks, same episode ids
    assert [full[s][2] for s in full] == [resumed[s][2] for s in full]  # same sampled episodes: same rewards
    a, b = _weights(tmp_path / "full/checkpoints/latest"), _weights(tmp_path / "resumed/checkpoints/latest")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
