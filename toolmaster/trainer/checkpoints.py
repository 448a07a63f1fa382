"""A run's step checkpoints: ``checkpoints/step-NNNNNN/`` holds everything a resumed run needs (the HF model
directory at its top level, DeepSpeed's engine state, every rank's RNG, the driver's trainer state);
``checkpoints/latest`` points at the newest; the last ``keep`` are kept, and the one ``checkpoints/best``
names (``grpo.keep_best``) too.

A checkpoint becomes visible in one rename of a complete directory, and the run's ``trainer_state.json``
(what ``--resume`` reads) names it only afterwards, so a run killed at any moment resumes from a whole
checkpoint: the new one or the one before.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from toolmaster.config_base import ConfigError


class Checkpoints:
    def __init__(self, run, keep: int):
        self.run, self.keep = run, keep
        self.root = Path(run.path) / "checkpoints"

    def save(self, step: int, write: Callable[[str], None], state: dict) -> str:
        """``write(dir)`` fills a fresh directory (every learner rank writes its part); ``state`` is the
        driver's trainer state at ``step``. Returns the checkpoint's path."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:06d}"
        tmp = self.root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write(str(tmp))
        state = {**state, "step": step, "checkpoint": str(final)}
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        old = self.root / f".{final.name}.old"
        if final.exists():  # the same step saved again: swap, never a moment without one
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        self._point_latest(final.name)
        self.run.save_state(step, state)
        self._prune()
        return str(final)

    def _point_latest(self, name: str) -> None:
        latest = self.root / "latest"
        if latest.is_dir() and not latest.is_symlink():  # a run directory from before step checkpoints
            shutil.rmtree(latest)
        self.point("latest", name)

    def point(self, alias: str, target: str) -> Path:
        """Make ``checkpoints/<alias>`` a link to ``target`` (a step checkpoint's name, or a path outside the
        run such as the start model), replaced in one rename."""
        self.root.mkdir(parents=True, exist_ok=True)
        path, link = self.root / alias, self.root / f".{alias}.tmp"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link)
        os.replace(link, path)
        return path

    def steps(self) -> list[Path]:
        return sorted(p for p in self.root.glob("step-*") if p.is_dir())

    def _prune(self) -> None:
        best = self.root / "best"
        protected = best.resolve() if best.is_symlink() else None
        for path in self.steps()[:-self.keep]:
            if path.resolve() != protected:
                shutil.rmtree(path, ignore_errors=True)


def has_engine_state(checkpoint: str) -> bool:
    """Whether ``checkpoint`` holds optimizer and RNG state (not only weights)."""
    return (Path(checkpoint) / "deepspeed").is_dir() and (Path(checkpoint) / "rng").is_dir()


def check_optimizer_source(checkpoint: str, num_ranks: int, zero_stage: int) -> None:
    """``grpo.optimizer_state=checkpoint``: ``checkpoint`` must hold Adam moments partitioned the way this
    run's learner will be (DeepSpeed loads a ZeRO partition per rank and cannot re-shard it), checked before
    any actor starts."""
    if not has_engine_state(checkpoint):
        raise ConfigError(f"grpo.optimizer_state=checkpoint: --model {checkpoint!r} holds no optimizer state "
                          "(pass an SFT or GRPO run's checkpoints/latest, not an exported model directory)")
    engine = Path(checkpoint) / "deepspeed" / "engine"
    ranks = len(list(engine.glob("*zero_pp_rank_*_optim_states.pt")))
    stage = 3 if any(engine.glob("zero_pp_rank_*_model_states.pt")) else 2
    if (ranks, stage) != (num_ranks, zero_stage):
        raise ConfigError(f"grpo.optimizer_state=checkpoint: --model {checkpoint!r} was written by {ranks} learner "
                          f"ranks at ZeRO stage {stage}; this run has learner.num_ranks={num_ranks}, "
                          f"learner.zero_stage={zero_stage} (use the same, or grpo.optimizer_state=fresh)")
