"""Connecting to Ray: the job's cluster when there is one (``ray job submit`` sets RAY_ADDRESS), else a
local instance. Also what a run asks of the cluster (checked before any actor starts, and bounded while
actors wait for placement: ``cluster.*``) and what a failed actor said (the last lines of its own log)."""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import time

from toolmaster.config_base import ConfigError

log = logging.getLogger(__name__)


def init_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep a local instance on loopback
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        # workers' output stays in their log files (vLLM and DeepSpeed are verbose); a failed actor's last
        # lines come with the driver's error (actor_error). TOOLMASTER_LOG_TO_DRIVER=1 streams them all.
        ray.init(include_dashboard=False, log_to_driver=os.environ.get("TOOLMASTER_LOG_TO_DRIVER") == "1")


# ---------------------------------------------------------------------------------------------- resources

class ClusterResourceError(ConfigError):
    """The cluster lacks resources the config asks for (and no autoscaler added them within the wait)."""


Demand = list[tuple[str, dict, int]]  # (what, resources of one actor or bundle, how many)


def _shape(cpus: float, gpus: float, resources: dict) -> dict:
    return {k: v for k, v in {"CPU": cpus, "GPU": gpus, **resources}.items() if v}


def learner_demand(cfg) -> Demand:
    lc = cfg.learner
    return [("learner rank", _shape(lc.num_cpus_per_rank, lc.num_gpus_per_rank, lc.resources), lc.num_ranks)]


def rollout_demand(cfg, workers: int | None = None) -> Demand:
    r = cfg.rollout
    if workers is None:
        workers = r.num_workers
        if r.autoscale.enabled:
            workers = max(r.autoscale.min_workers, min(r.autoscale.max_workers, workers))
    return [("rollout worker", _shape(r.num_cpus_per_worker, r.num_gpus_per_worker, r.resources), workers)]


def env_actor_demand(cfg) -> Demand:
    e = cfg.env_actors
    return [("tool-environment actor", _shape(e.num_cpus_per_actor, 0, e.resources), e.num_actors)] \
        if e.num_actors else []


def fleet_demand(cfg) -> Demand:
    return learner_demand(cfg) + rollout_demand(cfg) + env_actor_demand(cfg)


def _nodes() -> list[dict]:
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def _fmt(resources: dict) -> str:
    shown = {k: v for k, v in sorted(resources.items())
             if not k.startswith("node:") and k not in ("memory", "object_store_memory")}
    return ", ".join(f"{k} {v:g}" for k, v in shown.items()) or "nothing"


def shortfall(demand: Demand, nodes: list[dict] | None = None) -> list[str]:
    """What ``demand`` needs that the cluster's alive nodes do not have (their totals, not what is free):
    one line per missing resource; empty when it can be placed (as far as totals tell)."""
    nodes = _nodes() if nodes is None else nodes
    missing = []
    for what, shape, count in demand:
        if count and not any(all(node.get(k, 0) >= v for k, v in shape.items()) for node in nodes):
            lacking = [k for k, v in shape.items() if max((node.get(k, 0) for node in nodes), default=0) < v]
            if lacking:
                missing += [f"{k}: each {what} asks for {shape[k]:g}, the largest node has "
                            f"{max((node.get(k, 0) for node in nodes), default=0):g}" for k in lacking]
            else:
                missing.append(f"each {what} asks for {_fmt(shape)} on one node; no node has them together")
    totals: dict[str, float] = {}
    for node in nodes:
        for k, v in node.items():
            totals[k] = totals.get(k, 0) + v
    needed: dict[str, list] = {}
    for what, shape, count in demand:
        for k, v in shape.items():
            needed.setdefault(k, []).append((what, v, count))
    for k, parts in needed.items():
        need = sum(v * n for _, v, n in parts)
        if need > totals.get(k, 0) + 1e-9 and not any(line.startswith(f"{k}:") for line in missing):
            how = " + ".join(f"{n} {what}(s) × {v:g}" for what, v, n in parts if n)
            missing.append(f"{k}: {need:g} in all ({how}), the cluster has {totals.get(k, 0):g}")
    return missing


def cluster_summary(nodes: list[dict] | None = None) -> str:
    nodes = _nodes() if nodes is None else nodes
    return f"{len(nodes)} node(s): " + "; ".join(f"[{_fmt(n)}]" for n in nodes)


def has_autoscaler(setting: str = "detect", wait_s: float = 10.0) -> bool:
    """Whether the cluster has an autoscaler that may add nodes. Ray's monitor runs on every head and
    reports to the GCS every few seconds; on a cluster without an autoscaling config (a local instance,
    `ray start` by hand) it mirrors the live nodes as node types of their own ("node_<id>"), while a real
    autoscaler names the node types of its config."""
    if setting != "detect":
        return setting == "present"
    from ray.experimental.internal_kv import _internal_kv_get

    deadline = time.time() + wait_s
    while True:
        try:
            if _internal_kv_get("__autoscaler_v2_enabled") == b"1":
                return True
            raw = _internal_kv_get("__autoscaling_status")
        except Exception:  # noqa: BLE001 — a client without the GCS KV: assume none
            return False
        # node address -> node type; an autoscaler's nodes may not be tagged yet: asked again until the wait ends
        mapping = ((json.loads(raw).get("autoscaler_report") or {}).get("node_type_mapping") or {}) if raw else {}
        if mapping:
            return any(node_type != f"node_{address}" for address, node_type in mapping.items())
        if time.time() > deadline:  # the monitor has not reported (yet)
            return False
        time.sleep(0.5)


class ResourceWait:
    """A bounded wait for ``demand`` to be placed. ``check()`` is called while its actors or placement
    group are still pending: it raises ClusterResourceError once the wait is over and the cluster still
    lacks what the demand asks for (a demand the cluster can hold, e.g. busy or slow to start, waits on)."""

    def __init__(self, cluster_cfg, what: str, demand: Demand):
        self.cfg, self.what, self.demand = cluster_cfg, what, demand
        self.start = time.time()
        self.autoscaler: bool | None = None
        self.poll_s = min(5.0, cluster_cfg.resource_wait_s)

    @property
    def limit_s(self) -> float:
        return self.cfg.autoscaler_wait_s if self.autoscaler else self.cfg.resource_wait_s

    def check(self) -> None:
        missing = shortfall(self.demand)
        if not missing:
            return
        if self.autoscaler is None:
            self.autoscaler = has_autoscaler(self.cfg.autoscaler)
            if self.autoscaler:
                from toolmaster import console

                console.note(f"{self.what}: waiting up to {self.limit_s:g} s (cluster.autoscaler_wait_s) for the "
                             f"autoscaler to add nodes with: {'; '.join(missing)}")
        if time.time() - self.start >= self.limit_s:
            raise ClusterResourceError(resource_message(self.what, missing, self.autoscaler, self.limit_s))


def resource_message(what: str, missing: list[str], autoscaler: bool, waited_s: float) -> str:
    setting = "cluster.autoscaler_wait_s" if autoscaler else "cluster.resource_wait_s"
    why = ("the autoscaler did not add them" if autoscaler else "the cluster has no autoscaler that could add them")
    return (f"{what} cannot be placed: the cluster lacks " + "; ".join(missing) + f". Waited {waited_s:g} s "
            f"({setting}); {why}. The cluster has {cluster_summary()}. Start nodes with these resources "
            "(`ray start --resources='{\"learner\": 1}'`, --num-gpus) or change the config's resources.")


_noted: set[str] = set()


def _note_once(text: str) -> None:
    """A console note, not repeated (the driver checks before its run directory and again in build_fleet)."""
    from toolmaster import console

    if text not in _noted:
        _noted.add(text)
        console.note(text)


def check_cluster_resources(cfg, demand: Demand | None = None) -> None:
    """Before any actor starts: the cluster (right after Ray starts) holds what the fleet asks for. Without
    an autoscaler a shortfall fails once ``cluster.resource_wait_s`` has passed without nodes joining that
    cover it; with one, the console says what the run waits for and the placement waits bound it."""
    demand = fleet_demand(cfg) if demand is None else demand
    missing = shortfall(demand)
    if not missing:
        return
    cluster = cfg.cluster
    if has_autoscaler(cluster.autoscaler):
        _note_once("the cluster lacks " + "; ".join(missing) + f" ({cluster_summary()}); waiting up to "
                   f"{cluster.autoscaler_wait_s:g} s (cluster.autoscaler_wait_s) for the autoscaler to add nodes")
        return
    start = time.time()
    while time.time() - start < cluster.resource_wait_s:  # nodes of a starting cluster may still be joining
        time.sleep(min(2.0, cluster.resource_wait_s))
        missing = shortfall(demand)
        if not missing:
            return
    raise ClusterResourceError(resource_message("the fleet", missing, False, cluster.resource_wait_s))


def wait_placed(refs: list, wait: ResourceWait) -> None:
    """Block until every ref is ready (actors placed and constructed, or a placement group ready), under
    ``wait``'s bound on missing resources. Errors of the refs are left to the caller's ray.get."""
    import ray

    pending = list(refs)
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=wait.poll_s)
        if pending:
            wait.check()


# ----------------------------------------------------------------------------------------- actor errors

class ActorFailure(RuntimeError):
    """An actor of the run failed; the message carries its own error and the last lines of its log."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MARKER = re.compile(r"^:(actor_name|task_name|job_id):")  # Ray's markers in worker logs


def _local_log_tail(pid: int, lines: int) -> tuple[str, str] | None:
    import ray

    try:
        logs = ray._private.worker.global_worker.node.get_logs_dir_path()
    except Exception:  # noqa: BLE001 — a client driver has no node of its own
        return None
    for suffix in ("err", "out"):
        for path in sorted(glob.glob(os.path.join(logs, f"worker-*-{pid}.{suffix}"))):
            with open(path, errors="replace") as f:
                text = [line.rstrip("\n") for line in f if line.strip() and not _MARKER.match(line)]
            # a constructor's exception follows, as Ray's error already quotes it: what the actor wrote before it
            cut = next((i for i, line in enumerate(text) if line.startswith("Exception raised in creation task")),
                       len(text))
            text = text[:cut]
            if text:
                return path, "\n".join(text[-lines:])
    return None


def _state_api_tail(actor_id: str, lines: int) -> tuple[str, str] | None:
    try:  # needs the dashboard (a cluster's head has one; a local instance here does not)
        from ray.util.state import get_log

        text = "".join(get_log(actor_id=actor_id, tail=lines, suffix="err", timeout=10))
    except Exception:  # noqa: BLE001
        return None
    return (f"actor {actor_id} (state API)", text.rstrip()) if text.strip() else None


def actor_log_tail(actor_id: str | None, lines: int = 20) -> tuple[str, str] | None:
    """(where, text): the last ``lines`` lines of an actor's worker log, stderr first (then stdout), from
    this node's log directory or, for an actor on another node, Ray's state API."""
    if not actor_id or lines <= 0:
        return None
    import ray

    try:
        info = ray._private.state.actors(actor_id)
    except Exception:  # noqa: BLE001
        info = {}
    pid = info.get("Pid")
    node = (info.get("Address") or {}).get("NodeID")
    here = None
    try:
        here = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001
        pass
    if pid and (not node or node == here):
        return _local_log_tail(pid, lines)
    return _state_api_tail(actor_id, lines)


def actor_error(err: BaseException, lines: int = 20, max_lines: int = 40) -> str:
    """Ray's message for an actor's failure (for a constructor that raised, its traceback), cut to
    ``max_lines``, followed by the last ``lines`` lines of that actor's own log."""
    text = _ANSI.sub("", str(err)).strip().splitlines()
    if len(text) > max_lines:
        text = text[: max_lines // 2] + [f"... ({len(text) - max_lines} lines) ..."] + text[-max_lines // 2:]
    message = "\n".join(text)
    tail = actor_log_tail(getattr(err, "actor_id", None), lines)
    if tail:
        message += f"\n--- the last lines of the actor's log ({tail[0]}) ---\n{_ANSI.sub('', tail[1])}"
    return message
