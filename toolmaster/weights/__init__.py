"""Weight sync from the learner group to rollout engines, as numbered versions behind one interface."""
from toolmaster.weights.base import WeightTransport
from toolmaster.weights.factory import make_transport

__all__ = ["WeightTransport", "make_transport"]
