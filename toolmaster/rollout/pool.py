"""RolloutPool: owns the rollout workers and which worker holds which episode.

The driver asks for G episodes of each task and gets exactly those back. The pool hands out episodes one
at a time to the least-loaded worker (up to ``rollout.max_episodes_per_worker`` each), records every
assignment, and re-queues a dead worker's episodes on live workers while a replacement starts, so the
driver never sees a lost or duplicated episode. A worker that joins takes episodes only once it serves
the newest weights.

Under a group transport (NCCL, gloo_group) weights travel through a process group of fixed membership
(weights/group.py): every publish first rebuilds the group when membership changed (a worker died, was
replaced, added or drained), then broadcasts under a watchdog; a member that died or hung is replaced and
the group rebuilt over the rest. A newcomer or replacement starts on the initial weights and gets no
episode until a catch-up round (a rebuild that includes it, and a resend of the current version) has loaded
the current version into its engine.

An episode that raised (its record carries ``error``) runs again on another worker up to
``rollout.episode_retries`` times, then its failed record is kept. A worker whose engine died while the
actor lives says so (``worker_unhealthy``); it is retired and replaced like a dead actor and its episodes
re-queued, not failed.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from typing import Callable

import ray
from ray.exceptions import RayActorError

from toolmaster.ray_utils import ActorFailure, ResourceWait, actor_error, rollout_demand
from toolmaster.rollout.autoscale import AutoscalePolicy
from toolmaster.rollout.record import RolloutRecord
from toolmaster.rollout.settings import EpisodeSettings
from toolmaster.rollout.worker import RolloutWorker

log = logging.getLogger(__name__)


def _stop(worker) -> None:
    """Let a worker release its engine and scratch, then remove the actor."""
    try:
        ray.get(worker.shutdown.remote(), timeout=30)
    except Exception:  # best effort: the actor is killed next anyway
        pass
    ray.kill(worker)


class RolloutPool:
    def __init__(self, cfg, model_dir: str):
        self.cfg, self.model_dir = cfg, model_dir
        self.settings = EpisodeSettings.of(cfg)  # for callers that pass none
        self._actor_cls = ray.remote(num_cpus=cfg.rollout.num_cpus_per_worker, num_gpus=cfg.rollout.num_gpus_per_worker,
                                     resources=cfg.rollout.resources, max_restarts=0)(RolloutWorker)
        self._next_id = 0
        self.workers: dict[int, ray.actor.ActorHandle] = {}
        self._starting: dict[int, ray.ObjectRef] = {}  # worker id -> ref that resolves once it can take work
        self.assignment: dict[str, int] = {}  # episode id -> worker id, while the episode runs
        self.latest_handle: dict | None = None
        self.sync = None  # weights.group.GroupSync under a group transport (set_sync)
        self.held: dict[int, int] = {}  # worker id -> the version its engine serves, as the worker reported
        self.first_dispatch: dict[int, tuple] = {}  # worker id -> (version held, current) at its first episode
        self._by_version: set[int] = set()  # starting workers that report their version (group transports)
        self._group_lock = threading.Lock()
        self._catch_up_tries: Counter = Counter()
        self.replaced = 0
        self.episode_retries = 0  # episodes run again after an error, over the pool's life
        self._avoid: dict[str, int] = {}
        self.draining: set[int] = set()  # workers that take no new episodes and leave once idle
        self.events: list[dict] = []  # scaling events: time, action, workers before/after, reason
        self.autoscaler = AutoscalePolicy(cfg.rollout.autoscale) if cfg.rollout.autoscale.enabled else None
        self._in_flight: dict = {}
        self._queued = 0
        self._episode_seconds: deque = deque(maxlen=32)
        # run() may execute on a background thread (async GRPO) while the driver publishes weights
        self._lock = threading.RLock()
        self.env_actors = self._start_env_actors(cfg)
        initial = cfg.rollout.num_workers
        if self.autoscaler:
            initial = max(cfg.rollout.autoscale.min_workers, min(cfg.rollout.autoscale.max_workers, initial))
        self._startup_failures = 0
        for _ in range(initial):
            self._spawn()
        try:  # bounded where the cluster lacks what the workers ask for (cluster.resource_wait_s)
            self.wait_for_workers(resources=ResourceWait(cfg.cluster, f"the rollout pool ({initial} workers)",
                                                         rollout_demand(cfg, initial)))
        except BaseException:  # workers still waiting for placement cannot shut down: killed
            for worker in self.workers.values():
                ray.kill(worker, no_restart=True)
            self._stop_env_actors()
            raise

    def wait_for_workers(self, timeout_s: float | None = None, resources: ResourceWait | None = None) -> None:
        """Block until every starting worker can take work: the pool's own start, or a driver that wants a
        scale-up's capacity before its next batch. A worker lost while starting (e.g. its node went away) is
        replaced; TimeoutError after ``timeout_s``; ClusterResourceError where ``resources`` says the cluster
        lacks what the workers ask for."""
        deadline = None if timeout_s is None else time.time() + timeout_s
        while self._starting:
            left = None if deadline is None else max(0.0, deadline - time.time())
            if resources is not None:
                left = resources.poll_s if left is None else min(left, resources.poll_s)
            ready, _ = ray.wait(list(self._starting.values()), num_returns=1, timeout=left)
            if not ready:
                if resources is not None and (deadline is None or time.time() < deadline):
                    resources.check()
                    continue
                raise TimeoutError(f"{len(self._starting)} rollout worker(s) still starting after {timeout_s} s")
            self._started(ready[0])

    @staticmethod
    def _start_env_actors(cfg) -> list:
        if not cfg.env_actors.num_actors:
            return []
        from toolmaster.envs.actor import start_env_actors
        return start_env_actors(cfg)

    def _stop_env_actors(self) -> None:
        for a in self.env_actors:
            ray.kill(a, no_restart=True)
        self.env_actors = []

    def _spawn(self) -> int:
        with self._lock:
            return self._spawn_locked()

    def _spawn_locked(self) -> int:
        wid = self._next_id
        self._next_id += 1
        worker = self.workers[wid] = self._actor_cls.remote(wid, self.model_dir, self.cfg.model_dump(), self.env_actors)
        # Actor calls from one caller start in order, but an async actor interleaves them: the worker is kept
        # out of dispatch until it serves the newest version.
        # under a group transport it reports the version its engine loaded (the initial weights, or a resumed
        # run's checkpoint) and catches up through the group once ready: never stamped with a newer one
        if self.sync is not None and not (self.latest_handle or {}).get("preloaded"):
            self._starting[wid] = worker.version.remote()
            self._by_version.add(wid)
        else:
            self._starting[wid] = (worker.update_weights.remote(self.latest_handle) if self.latest_handle
                                   else worker.ready.remote())
        return wid

    @property
    def current_version(self) -> int:
        return self.latest_handle["version"] if self.latest_handle else 0

    def set_sync(self, sync) -> None:
        """Serve weights through ``sync`` (a GroupSync) from now on, or through handles (None)."""
        if self.sync is not None and self.sync is not sync:
            try:
                self.sync.teardown()
            except Exception as err:  # the old sender may be gone (a learner group that lost a rank)
                log.warning("tearing down the old weight group: %s", err)
        self.sync = sync

    def _replace(self, wid: int, why: str, kill: bool = False) -> None:
        with self._lock:
            if wid not in self.workers:  # already replaced (several of its episodes failed)
                return
            log.warning("rollout worker %d died (%s); re-queueing its episodes on a replacement", wid, why)
            handle = self.workers.pop(wid)
            if kill:  # the actor lives but cannot serve (its engine died): its other episodes fail over too
                ray.kill(handle, no_restart=True)
            self._starting.pop(wid, None)
            self.held.pop(wid, None)
            self._spawn_locked()
            self.replaced += 1

    def run(self, tasks: list, group_size: int, step: int, on_record: Callable[[RolloutRecord], None] | None = None,
            sampling_round: int = 0, settings: EpisodeSettings | None = None) -> list[RolloutRecord]:
        """Exactly ``len(tasks) * group_size`` episode records, grouped by task in task order."""
        task_refs = [ray.put(task) for task in tasks]
        prefix = f"s{step}-" + (f"r{sampling_round}-" if sampling_round else "")
        specs = [(f"{prefix}t{i}-g{g}", task_refs[i]) for i in range(len(tasks)) for g in range(group_size)]
        return self.run_specs(specs, on_record, settings=settings)

    def run_specs(self, specs: list, on_record: Callable[[RolloutRecord], None] | None = None,
                  generation: dict | None = None, settings: EpisodeSettings | None = None) -> list[RolloutRecord]:
        """Run (episode_id, task) pairs; records come back in ``specs`` order. Episodes run with ``settings``
        (the pool's own by default); ``generation`` replaces their sampling (e.g. greedy evaluation between
        training steps)."""
        settings = settings or self.settings
        if generation is not None:
            settings = settings.model_copy(update={"generation": EpisodeSettings.of(self.cfg, generation).generation})
        settings_ref = ray.put(settings)
        queue = deque(specs)
        in_flight: dict[ray.ObjectRef, tuple[int, tuple]] = {}
        self._in_flight = in_flight
        done: dict[str, RolloutRecord] = {}
        attempts: Counter = Counter()
        self._avoid: dict[str, int] = {}  # episode id -> the worker where it raised
        while queue or in_flight:
            self._queued = len(queue)
            self.tick()
            self.catch_up()
            self._dispatch(queue, in_flight, settings_ref)
            waiting = list(in_flight) + list(self._starting.values())
            if not waiting:
                raise RuntimeError(f"no rollout worker can take episodes: workers {sorted(self.workers)} hold "
                                   f"versions {self.held} and the current one ({self.current_version}) could not "
                                   "be sent to them (see the weight group's events)")
            ready, _ = ray.wait(waiting, num_returns=1)
            for ref in ready:
                if ref not in in_flight:
                    self._started(ref)
                    continue
                wid, spec = in_flight.pop(ref)
                self.assignment.pop(spec[0], None)
                try:
                    record = ray.get(ref)
                except RayActorError as err:
                    self._replace(wid, type(err).__name__)
                    queue.appendleft(spec)
                    continue
                if record.worker_unhealthy:
                    self._replace(wid, record.error["message"][:200], kill=True)
                    queue.appendleft(spec)
                    continue
                if record.failed and attempts[spec[0]] < self.cfg.rollout.episode_retries:
                    attempts[spec[0]] += 1
                    self.episode_retries += 1
                    self._avoid[spec[0]] = wid
                    queue.appendleft(spec)
                    continue
                done[spec[0]] = record
                self._episode_seconds.append(record.timings["episode"])
                if on_record:
                    on_record(record)
        self._queued = 0
        self.tick()
        return [done[eid] for eid, _ in specs]

    def tick(self) -> dict | None:
        """Apply the autoscaling policy once (the rollout loop calls it; a driver may call it while idle);
        returns the scaling event, if any. Also retires drained workers."""
        self._retire_drained()
        if self.autoscaler is None:
            return None
        load = Counter(wid for wid, _ in self._in_flight.values())
        serving = [w for w in self.workers if w not in self.draining]
        mean_s = sum(self._episode_seconds) / len(self._episode_seconds) if self._episode_seconds else None
        cap = self.cfg.rollout.max_episodes_per_worker
        queued_beyond = max(0, self._queued - (len(serving) * cap - sum(load[w] for w in serving)))
        decision = self.autoscaler.decide(time.time(), len(serving), queued_beyond, sum(load.values()), cap, mean_s)
        if decision.target == len(serving):
            return None
        before = len(serving)
        if decision.target > before:
            for _ in range(decision.target - before):
                self._spawn()  # one that does not fit stays pending: Ray's cluster autoscaler adds a node
            action = "scale_up"
        else:  # drain the least-loaded workers: no new episodes; they leave once their episodes finish
            for wid in sorted(serving, key=lambda w: (w not in self._starting, load[w]))[: before - decision.target]:
                self.draining.add(wid)
            action = "scale_down"
        event = {"time": time.time(), "action": action, "workers_before": before, "workers_after": decision.target,
                 "reason": decision.reason}
        self.events.append(event)
        log.info("rollout pool %s %d → %d: %s", action, before, decision.target, decision.reason)
        self._retire_drained()
        return event

    def _retire_drained(self) -> None:
        busy = {wid for wid, _ in self._in_flight.values()}
        for wid in [w for w in self.draining if w not in busy]:
            with self._lock:
                handle = self.workers.pop(wid, None)
                self._starting.pop(wid, None)
                self.held.pop(wid, None)
            self.draining.discard(wid)
            if handle is not None:
                _stop(handle)

    def _started(self, ref: ray.ObjectRef) -> None:
        wid = next(w for w, r in self._starting.items() if r == ref)
        del self._starting[wid]
        try:
            value = ray.get(ref)
            self.held[wid] = value if wid in self._by_version else self.current_version
            self._by_version.discard(wid)
        except RayActorError as err:
            self._startup_failures += 1
            if self._startup_failures > 2 * max(self.cfg.rollout.num_workers, 1) + 2:  # not transient: say why
                raise ActorFailure("rollout workers keep dying while starting; the last one's error:\n"
                                   + actor_error(err, self.cfg.cluster.log_tail_lines)) from None
            self._replace(wid, type(err).__name__)

    def _dispatch(self, queue: deque, in_flight: dict, settings_ref: ray.ObjectRef) -> None:
        load = Counter(wid for wid, _ in in_flight.values())
        live = [wid for wid in self.workers if wid not in self._starting and wid not in self.draining
                and (self.sync is None or self.held.get(wid, -1) >= self.current_version)]
        cap = self.cfg.rollout.max_episodes_per_worker
        while queue and live:
            avoid = self._avoid.get(queue[0][0])
            wid = min(live, key=lambda w: (load[w] >= cap, w == avoid, load[w]))
            if load[wid] >= cap:
                return
            spec = queue.popleft()
            self.first_dispatch.setdefault(wid, (self.held.get(wid, -1), self.current_version))
            in_flight[self.workers[wid].run_episode.remote(*spec, settings_ref)] = (wid, spec)
            self.assignment[spec[0]] = wid
            load[wid] += 1

    def update_weights(self, handle: dict) -> float:
        """Every worker serves ``handle``'s version when this returns (workers that die meanwhile are replaced
        by the rollout loop, and replacements start from the newest handle). A group transport's handle goes
        through the group (``_sync_group``)."""
        if handle.get("group"):
            if self.sync is None:
                raise RuntimeError(f"a {handle['group']} handle needs the pool's weight group (set_sync)")
            start = time.time()
            with self._lock:
                self.latest_handle = handle
            self._sync_group()
            return time.time() - start
        with self._lock:
            self.latest_handle = handle
            workers = list(self.workers.items())
        seconds = [0.0]
        for wid, ref in [(wid, w.update_weights.remote(handle)) for wid, w in workers]:
            try:
                took = ray.get(ref)
            except RayActorError:
                continue
            if took is None:  # its engine died: a replacement starts from this handle
                self._replace(wid, "engine died during a weight update", kill=True)
            else:
                seconds.append(took)
                self.held[wid] = max(self.held.get(wid, 0), handle["version"])
        return max(seconds)

    def _sync_group(self) -> None:
        """Bring every worker that can take work to the current version through the group: rebuild it when
        membership changed, then send, under the group's watchdog. A lost or hung member is replaced (its
        replacement catches up once ready) and the round repeats over the rest; a member that only missed
        the version stays out of dispatch until a later round reaches it."""
        from toolmaster.weights.base import StaleVersion

        handle = self.latest_handle
        with self._group_lock:
            for _ in range(3):
                with self._lock:
                    members = {wid: w for wid, w in self.workers.items()
                               if wid not in self._starting and wid not in self.draining}
                if not members:
                    return
                out = self.sync.ensure(members)
                if out.clean:
                    out = self.sync.send(handle)
                    for wid, version in out.ok.items():
                        if version is None:  # its engine died while loading
                            self._replace(wid, "engine died during a weight update", kill=True)
                        else:
                            self.held[wid] = version
                for wid, why in out.lost.items():
                    self._replace(wid, f"lost in the weight group ({why})")
                for wid in out.hung:
                    self._replace(wid, f"blocked in the weight group past {self.sync.watchdog_s:.0f} s", kill=True)
                if out.clean or (out.sender_error or "").startswith(StaleVersion.__name__):
                    return
                log.warning("weight group round failed; rebuilding over the live workers")

    def catch_up(self) -> None:
        """Workers that can take work but hold an older version (newcomers, replacements, a missed send) get
        the current one through a rebuilt group; a few tries per membership and version."""
        if self.sync is None or not (self.latest_handle or {}).get("group"):
            return
        behind = [wid for wid in self.workers if wid not in self._starting and wid not in self.draining
                  and self.held.get(wid, -1) < self.current_version]
        key = (self.current_version, frozenset(self.workers))
        if behind and self._catch_up_tries[key] < 3:
            self._catch_up_tries[key] += 1
            log.info("rollout workers %s catch up to version %d through the weight group", behind,
                     self.current_version)
            self._sync_group()

    def reset(self, model_dir: str, cfg=None, version: int = 0) -> None:
        """Serve ``model_dir`` as ``version`` on every worker and start the counters again: a shared fleet
        between runs. ``cfg`` (same engines) replaces the dispatch settings and the default episode settings."""
        from toolmaster.weights.object_store import checkpoint_handle

        if cfg is not None:
            if cfg.env_actors != self.cfg.env_actors:  # the next run runs its tools elsewhere
                self._stop_env_actors()
                self.env_actors = self._start_env_actors(cfg)
            self.cfg, self.settings = cfg, EpisodeSettings.of(cfg)
        handle = checkpoint_handle(model_dir, version)
        transport = self.cfg.rollout.weight_transport
        ray.get([w.reset.remote(handle, self.env_actors, transport) for w in self.workers.values()])
        self.model_dir, self.latest_handle = model_dir, (handle if version else None)
        self.held = dict.fromkeys(self.workers, version)
        self.first_dispatch, self._catch_up_tries = {}, Counter()
        self.replaced = self.episode_retries = 0
        self.events, self._episode_seconds = [], deque(maxlen=32)

    def prompt_logprobs(self, token_ids: list[int]) -> list[list[float]]:
        return ray.get([w.prompt_logprobs.remote(token_ids) for w in self.workers.values()])

    def shutdown(self) -> None:
        for w in self.workers.values():
            _stop(w)
        self.workers.clear()
        self._starting.clear()
        self._stop_env_actors()
