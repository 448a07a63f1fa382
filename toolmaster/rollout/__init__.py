"""Rollouts: the vLLM engine policy that records exact token trajectories, and the Ray rollout workers."""
