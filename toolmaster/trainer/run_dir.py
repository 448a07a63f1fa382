"""A run directory: config, metrics JSONL, wandb (offline unless configured), a reward plot, checkpoints."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

from toolmaster.config import dump_config


class RunDir:
    def __init__(self, cfg, kind: str):
        self.path = Path(cfg.run_dir)
        self.path.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, self.path / "config.yaml")
        self.metrics_path = self.path / "metrics.jsonl"
        self.kind = kind
        os.environ.setdefault("WANDB_MODE", "offline")
        import wandb
        self.wandb = wandb.init(project="toolmaster", name=f"{kind}-{self.path.name}", dir=str(self.path),
                                config=cfg.model_dump(), reinit="finish_previous")

    def load_meta(self) -> dict:
        path = self.path / "meta.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def save_meta(self, key: str, value) -> None:
        """Facts about the run that are not per-step metrics (e.g. active sandbox layers), in meta.json."""
        path = self.path / "meta.json"
        meta = self.load_meta()
        meta[key] = value
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, path)
        self.wandb.config.update({key: value}, allow_val_change=True)

    def log(self, step: int, metrics: dict) -> None:
        record = {"step": step, **metrics}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.wandb.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def save_rollouts(self, step: int, episodes: list[dict]) -> Path:
        """One JSONL file per step under ``rollouts/`` (like verl's rollout_data_dir), written atomically."""
        folder = self.path / "rollouts"
        folder.mkdir(exist_ok=True)
        out = folder / f"step-{step:06d}.jsonl"
        tmp = out.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in episodes))
        os.replace(tmp, out)
        return out

    def read_metrics(self) -> list[dict]:
        return self.read(self.path)

    @staticmethod
    def read(path: Path) -> list[dict]:
        """The metrics lines of the run directory at ``path``."""
        metrics = Path(path) / "metrics.jsonl"
        if not metrics.exists():
            return []
        return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]

    def plot(self, keys: tuple[str, ...]) -> Path:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.read_metrics()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key in keys:  # e.g. training reward and success per step, and held-out success every N steps
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points), marker="s" if key.startswith("eval/") else "o",
                        label=f"{key.split('/')[-1]} (held-out)" if key.startswith("eval/") else key)
        ax.set_xlabel("step")
        ax.set_title(f"{self.kind}: {self.path.name}")
        ax.legend()
        fig.tight_layout()
        out = self.path / f"{self.kind}_curve.png"
        fig.savefig(out)
        plt.close(fig)
        return out

    def save_state(self, step: int, extra: dict | None = None) -> None:
        """Trainer state (step = data position, the driver's RNG), written atomically; ``--resume`` reads it."""
        version, internal, gauss = random.getstate()
        state = {"step": step, "python_rng": [version, list(internal), gauss], **(extra or {})}
        tmp = self.path / "trainer_state.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.path / "trainer_state.json")

    @staticmethod
    def checkpoint_of(run_dir: str) -> str | None:
        """The checkpoint a resumed run in ``run_dir`` would start from (None: nothing saved yet)."""
        path = Path(run_dir) / "trainer_state.json"
        return json.loads(path.read_text()).get("checkpoint") if path.exists() else None

    def load_state(self) -> dict | None:
        """The last saved trainer state, with the driver's RNG restored from it; None for a new run."""
        path = self.path / "trainer_state.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        if isinstance(state.get("python_rng"), list):
            version, internal, gauss = state["python_rng"]
            random.setstate((version, tuple(internal), gauss))
        return state

    def finish(self) -> None:
        self.wandb.finish()
