"""LearnerGroup: K learner actors in one placement group forming one torch.distributed group."""
from __future__ import annotations

import socket

import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from toolmaster.learner.actor import Learner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@ray.remote(num_cpus=0)
def _rendezvous_address() -> tuple[str, int]:
    """Address and free port on the node that runs rank 0 (the torch.distributed store lives there)."""
    return ray.util.get_node_ip_address(), _free_port()


class LearnerGroup:
    def __init__(self, cfg, model_dir: str):
        lc = cfg.learner
        self.num_ranks = lc.num_ranks
        bundle = {"CPU": lc.num_cpus_per_rank, **({"GPU": lc.num_gpus_per_rank} if lc.num_gpus_per_rank else {}),
                  **lc.resources}
        bundles = [dict(bundle) for _ in range(lc.num_ranks)]
        # PACK: all ranks on one node when they fit (fast collectives), spread over nodes when they do not
        self.pg = placement_group(bundles, strategy="PACK")
        ray.get(self.pg.ready())
        in_bundle = [PlacementGroupSchedulingStrategy(placement_group=self.pg, placement_group_bundle_index=rank)
                     for rank in range(lc.num_ranks)]
        self._rank0 = in_bundle[0]
        addr, port = ray.get(_rendezvous_address.options(scheduling_strategy=self._rank0).remote())
        actor_cls = ray.remote(num_cpus=lc.num_cpus_per_rank, num_gpus=lc.num_gpus_per_rank, resources=lc.resources,
                               max_restarts=0)(Learner)
        self.actors = [actor_cls.options(scheduling_strategy=in_bundle[rank]).remote(
                           rank, lc.num_ranks, addr, port, model_dir, lc.model_dump(), cfg.grpo.seed)
                       for rank in range(lc.num_ranks)]
        ray.get([a.ready.remote() for a in self.actors])

    def train_step(self, batch: dict, kind: str) -> dict:
        results = ray.get([a.train_step.remote(batch, kind) for a in self.actors])
        # each rank's loss is its share of the global token mean, scaled by K (DeepSpeed averages gradients)
        merged = {"loss": sum(r["loss"] for r in results) / len(results), "tokens": sum(r["tokens"] for r in results)}
        for key in ("clip_fraction", "ratio_mean", "kl"):
            if key in results[0]:
                merged[key] = sum(r[key] for r in results) / len(results)
        return merged

    def publish(self, version: int, transport: str) -> dict:
        """Rank 0 publishes the full weights as ``version``; returns the small handle workers apply."""
        return ray.get([a.publish.remote(version, transport) for a in self.actors])[0]

    def connect_transport(self, transport: str, workers: list) -> None:
        """Open a transport that holds connections to the engines (NCCL); every rank takes the call."""
        _, port = ray.get(_rendezvous_address.options(scheduling_strategy=self._rank0).remote())
        ray.get([a.connect_transport.remote(transport, workers, port) for a in self.actors])

    def save(self, path: str, tokenizer_dir: str) -> None:
        ray.get([a.save.remote(path, tokenizer_dir) for a in self.actors])

    def logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        # every rank runs the forward: under ZeRO-3 the parameters are gathered collectively
        return ray.get([a.logprobs.remote(token_ids) for a in self.actors])[0]

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
        ray.util.remove_placement_group(self.pg)
