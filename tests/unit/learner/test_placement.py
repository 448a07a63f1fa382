"""Where a learner rank computes: the choice of accelerator, and that every tensor the learner builds goes
through its placement (a recording fake accelerator stands in for a GPU)."""
import pytest
import torch

from toolmaster.learner import actor as actor_module
from toolmaster.learner.actor import Learner
from toolmaster.learner.placement import Placement, choose_placement


def test_auto_takes_the_gpu_ray_gave_the_actor_and_cpu_otherwise():
    assert choose_placement("auto", [3], cuda_available=True).accelerator == "cuda"
    assert choose_placement("auto", [], cuda_available=True).accelerator == "cpu"     # a GPU it was not given
    assert choose_placement("auto", [0], cuda_available=False).accelerator == "cpu"   # given, but not visible
    assert choose_placement("cpu", [0], cuda_available=True).accelerator == "cpu"     # the explicit override
    assert choose_placement("cuda", [0], cuda_available=True).device == torch.device("cuda", 0)
    with pytest.raises(RuntimeError, match="sees no CUDA device"):
        choose_placement("cuda", [], cuda_available=False)


class RecordingPlacement(Placement):
    """Puts tensors on the CPU (no GPU here) and remembers each one it placed."""

    def __init__(self):
        super().__init__("cuda")
        object.__setattr__(self, "placed", [])

    def put(self, tensor):
        out = tensor.clone()
        self.placed.append(out)
        return out

    def holds(self, tensor) -> bool:
        return any(tensor is t for t in self.placed)


class FakeEngine:
    """The DeepSpeed engine's forward: records its inputs, returns logprobs derived from them."""

    def __init__(self, placement):
        self.placement, self.inputs = placement, []

    def __call__(self, input_ids, chunk_tokens, min_chunks):
        self.inputs.append(input_ids)
        return torch.zeros(input_ids.shape[0], input_ids.shape[1] - 1, requires_grad=True)


def _learner(placement) -> Learner:
    learner = Learner.__new__(Learner)  # everything but DeepSpeed and the model
    learner.placement, learner.rank, learner.world_size = placement, 0, 1
    learner.cfg = {"zero_stage": 2, "eps_low": 0.2, "eps_high": 0.28, "logprob_chunk_tokens": 0}
    learner.engine = FakeEngine(placement)
    return learner


BATCH = {"token_ids": [[1, 2, 3, 4], [5, 6, 7]], "loss_mask": [[0, 0, 1, 1], [0, 1, 1]],
         "logprobs": [[0.0, 0.0, -1.0, -2.0], [0.0, -0.5, -0.7]], "advantages": [1.0, -1.0],
         "loss_weights": [0.2, 0.2], "total_tokens": 4}


@pytest.mark.parametrize("rows", [[0, 1], None])  # a real micro-batch, and the empty pass of a shorter rank
def test_every_grpo_input_is_on_the_accelerator(monkeypatch, rows):
    placement = RecordingPlacement()
    learner, seen = _learner(placement), {}

    def recording_loss(logp, old, adv, mask, weights, *args, **kwargs):
        seen.update(old=old, adv=adv, mask=mask, weights=weights)
        return (logp * mask).sum(), {}
    monkeypatch.setattr(actor_module, "grpo_loss", recording_loss)
    learner._micro_loss(learner._shard(BATCH), rows, "grpo", BATCH)
    assert all(placement.holds(t) for t in learner.engine.inputs)
    for name in ("adv", "mask", "weights"):
        assert placement.holds(seen[name]), name
    # π_old is the placed padding (or zeros shaped like the placed mask, on its device)
    assert placement.holds(seen["old"]) or (rows is None and seen["old"].device == seen["mask"].device)


def test_sft_and_scoring_inputs_are_on_the_accelerator(monkeypatch):
    placement = RecordingPlacement()
    learner, seen = _learner(placement), {}

    def recording_loss(logp, mask, normalizer):
        seen["mask"] = mask
        return (logp * mask).sum()
    monkeypatch.setattr(actor_module, "sft_loss", recording_loss)
    learner._micro_loss(learner._shard(BATCH), [0, 1], "sft", BATCH)
    assert placement.holds(seen["mask"]) and placement.holds(learner.engine.inputs[-1])
    learner.engine.eval = lambda: None
    learner.logprobs([[1, 2, 3]])
    assert placement.holds(learner.engine.inputs[-1])
