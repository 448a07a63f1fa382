"""LearnerGroup: K learner actors in one placement group forming one torch.distributed group."""
from __future__ import annotations

import socket

import ray
from ray.exceptions import RayActorError
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from toolmaster.learner.actor import Learner
from toolmaster.ray_utils import ActorFailure, ResourceWait, actor_error, learner_demand, wait_placed


class LearnerRankLost(ActorFailure):
    """A learner rank died; the group is torn down and the run can continue with --resume."""


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
        self.log_tail_lines = cfg.cluster.log_tail_lines
        try:  # bounded where the cluster lacks what the bundles ask for (cluster.resource_wait_s)
            wait_placed([self.pg.ready()], ResourceWait(cfg.cluster, f"the learner group ({lc.num_ranks} ranks)",
                                                        learner_demand(cfg)))
        except BaseException:
            ray.util.remove_placement_group(self.pg)
            raise
        in_bundle = [PlacementGroupSchedulingStrategy(placement_group=self.pg, placement_group_bundle_index=rank)
                     for rank in range(lc.num_ranks)]
        self._rank0 = in_bundle[0]
        addr, port = ray.get(_rendezvous_address.options(scheduling_strategy=self._rank0).remote())
        actor_cls = ray.remote(num_cpus=lc.num_cpus_per_rank, num_gpus=lc.num_gpus_per_rank, resources=lc.resources,
                               max_restarts=0)(Learner)
        self.actors = [actor_cls.options(scheduling_strategy=in_bundle[rank]).remote(
                           rank, lc.num_ranks, addr, port, model_dir, lc.model_dump(), cfg.grpo.seed)
                       for rank in range(lc.num_ranks)]
        self._all("ready")

    def reset(self, model_dir: str, cfg) -> None:
        """Every rank starts again on ``model_dir`` with ``cfg.learner`` (same ranks and resources): fresh
        weights, optimizer state and RNG, as new actors would have."""
        if cfg.learner.num_ranks != self.num_ranks:
            raise ValueError(f"a learner group of {self.num_ranks} ranks cannot reset to learner.num_ranks = "
                             f"{cfg.learner.num_ranks}")
        self._all("reset", model_dir, cfg.learner.model_dump(), cfg.grpo.seed)

    def _all(self, method: str, *args) -> list:
        """Call ``method`` on every rank; results in rank order. A rank that dies stops the run at once with
        an error naming it (its peers would otherwise wait forever inside a collective)."""
        refs = [getattr(a, method).remote(*args) for a in self.actors]
        results, pending = {}, list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                results[done[0]] = ray.get(done[0])
            except RayActorError as err:
                rank = refs.index(done[0])
                why = actor_error(err, self.log_tail_lines)  # before the shutdown: the actor table still has it
                self.shutdown()
                if method == "ready":
                    raise LearnerRankLost(f"learner rank {rank} of {len(refs)} failed to start "
                                          f"({type(err).__name__}). The rank's error:\n{why}") from None
                raise LearnerRankLost(f"learner rank {rank} of {len(refs)} died during {method} "
                                      f"({type(err).__name__}); the run stopped. Continue from the last "
                                      f"checkpoint with --resume. The rank's error:\n{why}") from None
        return [results[ref] for ref in refs]

    def train_step(self, batch: dict, kind: str) -> dict:
        results = self._all("train_step", batch, kind)
        # each rank's loss is its share of the global token mean, scaled by K (DeepSpeed averages gradients)
        merged = {"loss": sum(r["loss"] for r in results) / len(results), "tokens": sum(r["tokens"] for r in results),
                  "microbatches": max(r["microbatches"] for r in results)}
        for key in ("clip_fraction", "dual_clip_fraction", "ratio_mean", "kl", "grad_norm"):
            if key in results[0]:
                merged[key] = sum(r[key] for r in results) / len(results)
        if "ratio_max" in results[0]:
            merged["ratio_max"] = max(r["ratio_max"] for r in results)
        return merged

    def publish(self, version: int, transport: str) -> dict:
        """Rank 0 publishes the full weights as ``version``; returns the small handle workers apply."""
        return self._all("publish", version, transport)[0]

    @property
    def sender(self):
        """Rank 0's actor: the sender of a group transport's weight group (weights/group.py)."""
        return self.actors[0]

    def save(self, path: str) -> None:
        """Model, optimizer, step counters and RNG of every rank into ``path`` (see Learner.save)."""
        self._all("save", path)

    def load(self, path: str) -> None:
        self._all("load", path)

    def memory(self) -> list[dict]:
        """Each rank's memory (Learner.memory), in rank order."""
        return self._all("memory")

    def logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        # every rank runs the forward: under ZeRO-3 the parameters are gathered collectively
        return self._all("logprobs", token_ids)[0]

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
        if self.pg is not None:
            ray.util.remove_placement_group(self.pg)
            self.pg = None
