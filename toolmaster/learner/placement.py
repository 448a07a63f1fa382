"""Where a learner rank computes: the DeepSpeed accelerator and the device every tensor it builds goes to.

Decided inside each actor, from what Ray gave it: Ray workers do not inherit the driver's environment, and
an actor given a GPU sees exactly that GPU (``CUDA_VISIBLE_DEVICES``), so "cuda" always means its device 0.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    accelerator: str  # DeepSpeed's accelerator name (DS_ACCELERATOR): "cuda" or "cpu"

    @property
    def device(self):
        import torch

        return torch.device("cuda", 0) if self.accelerator == "cuda" else torch.device("cpu")

    def put(self, tensor):
        """``tensor`` on this rank's device: every input a learner builds passes through here."""
        return tensor.to(self.device, non_blocking=True)


def choose_placement(setting: str, gpu_ids: list, cuda_available: bool) -> Placement:
    """``learner.device``: "auto" is CUDA when the actor was given a GPU that it can see, else CPU."""
    if setting == "cpu":
        return Placement("cpu")
    if setting == "cuda":
        if not cuda_available:
            raise RuntimeError(f"learner.device = 'cuda', but this learner sees no CUDA device (Ray gave it GPUs "
                               f"{list(gpu_ids)}); set learner.num_gpus_per_rank, or learner.device = 'auto'")
        return Placement("cuda")
    if setting != "auto":
        raise ValueError(f"learner.device = {setting!r}: expected auto, cuda or cpu")
    return Placement("cuda" if gpu_ids and cuda_available else "cpu")


def actor_placement(setting: str) -> Placement:
    """The placement of the calling process: a Ray actor's own GPUs; outside Ray (the device check), the
    GPUs it can see."""
    import torch

    cuda = torch.cuda.is_available()
    try:
        import ray

        in_ray = ray.is_initialized()
    except ImportError:
        in_ray = False
    gpu_ids = ray.get_gpu_ids() if in_ray else list(range(torch.cuda.device_count() if cuda else 0))
    return choose_placement(setting, gpu_ids, cuda)
