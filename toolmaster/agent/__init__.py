"""The multi-turn agent loop and the policies that drive it."""
from toolmaster.agent.episode import Episode
from toolmaster.agent.loop import TurnRequest, run_episodes

__all__ = ["Episode", "TurnRequest", "run_episodes"]
