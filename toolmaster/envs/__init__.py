"""Environments behind one interface (toolmaster.envs.base.Environment)."""
from __future__ import annotations

from toolmaster.envs.base import Environment, Task


def make_env(env_cfg) -> Environment:
    if env_cfg.name == "toolworld":
        from toolmaster.envs.toolworld import ToolWorld
        return ToolWorld(env_cfg.toolworld)
    if env_cfg.name == "toolhop":
        from toolmaster.envs.toolhop import ToolHop
        return ToolHop(env_cfg.toolhop)
    if env_cfg.name == "stabletoolbench":
        from toolmaster.envs.stabletoolbench import StableToolBench
        return StableToolBench(env_cfg.stabletoolbench, env_cfg.tool_server, env_cfg.judge)
    if env_cfg.name == "tmdb":
        from toolmaster.envs.tmdb import TMDB
        return TMDB(env_cfg.tmdb, env_cfg.tool_server, env_cfg.judge)
    if env_cfg.name == "codebook":
        from toolmaster.envs.codebook import Codebook
        return Codebook(env_cfg.codebook)
    if env_cfg.name == "agent":
        from toolmaster.envs.agent import AgentEnv
        return AgentEnv(env_cfg.agent)
    if env_cfg.name == "verifiers":
        from toolmaster.envs.verifiers_env import VerifiersEnv
        return VerifiersEnv(env_cfg.verifiers, env_cfg.max_turns)
    raise ValueError(f"unknown environment {env_cfg.name!r}")


__all__ = ["Environment", "Task", "make_env"]
