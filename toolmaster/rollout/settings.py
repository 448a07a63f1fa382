"""What one episode runs with: environment, turn limit, trial prompt, reward weights, sampling and seed.

The settings travel with each episode instead of being fixed into a rollout worker when it starts, so one
fleet serves runs whose settings differ (greedy evaluation between training steps, another environment,
another reward mix) without restarting an engine.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from toolmaster.config import EnvConfig, GenerationConfig, RewardConfig


class EpisodeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    env: EnvConfig
    trial: bool
    rewards: RewardConfig
    generation: GenerationConfig
    seed: int  # with the episode id and turn, the seed of each sampled turn
    failed_episode_reward: float
    # a custom agent's own temperature and max_tokens apply (evaluation); in training the run's sampling
    # does, or an agent written with temperature 0 would sample G identical episodes and nothing trains
    client_sampling: bool = True

    @classmethod
    def of(cls, cfg, generation: GenerationConfig | dict | None = None, training: bool = False) -> "EpisodeSettings":
        """A run's settings; ``generation`` replaces its rollout sampling (e.g. greedy evaluation)."""
        if isinstance(generation, dict):
            generation = GenerationConfig(**generation)
        return cls(env=cfg.env, trial=cfg.synth.trial, rewards=cfg.rewards,
                   generation=GenerationConfig(**(generation or cfg.rollout.generation).model_dump()),
                   seed=cfg.grpo.seed, failed_episode_reward=cfg.rollout.failed_episode_reward,
                   client_sampling=not training)

    @property
    def env_key(self) -> str:
        return self.env.model_dump_json()
