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

    def log(self, step: int, metrics: dict) -> None:
        record = {"step": step, **metrics}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.wandb.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

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
        """Trainer state (step = data position, RNG), written atomically next to the checkpoint."""
        state = {"step": step, "python_rng": repr(random.getstate()), **(extra or {})}
        tmp = self.path / "trainer_state.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.path / "trainer_state.json")

    def load_state(self) -> dict | None:
        path = self.path / "trainer_state.json"
        return json.loads(path.read_text()) if path.exists() else None

    def finish(self) -> None:
        self.wandb.finish()
