"""The driver's side of a group transport (NCCL, gloo_group), whatever the transport: which rollout workers
are in the weight group, rebuilding it when membership changed, and every collective under a watchdog.

The group is learner rank 0 (the *sender*, group rank 0) and the members (ranks 1..W), fixed when built.
The rollout pool calls ``ensure(workers)`` before each send: when the workers it passes (the live ones that
can take work, newcomers included) differ from the members, the old group is torn down (sender and members
leave it) and a new one is built over them. ``send(handle)`` broadcasts the staged version; the driver waits
at most ``watchdog_s`` for the sender and every member. A member whose actor died, a member still blocked
at the deadline and a member whose receive failed are reported; on any failure the group is torn down, so
the next ``ensure`` rebuilds it over the workers that are left. The pool decides what to do with them
(replace dead and hung workers; keep a worker that missed a version out of dispatch until it catches up).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class MemberLost(RuntimeError):
    """The actor behind a call died."""


class SenderLost(RuntimeError):
    """The sender (learner rank 0) died or hung past the watchdog: the learner group cannot continue."""


class RayCalls:
    """How the driver reaches actors (unit tests pass a fake with the same four methods)."""

    def call(self, actor, method: str, *args):
        return getattr(actor, method).remote(*args)

    def wait(self, refs: list, timeout: float) -> tuple[list, list]:
        import ray

        if not refs:
            return [], []
        return ray.wait(refs, num_returns=len(refs), timeout=timeout)

    def result(self, ref):
        import ray
        from ray.exceptions import RayActorError

        try:
            return ray.get(ref)
        except RayActorError as err:
            raise MemberLost(type(err).__name__) from None

    def kill(self, actor) -> None:
        import ray

        ray.kill(actor, no_restart=True)


@dataclass
class Outcome:
    """What one group operation did: members that hold the result, lost (actor died), hung (still blocked
    at the watchdog's deadline: the caller should kill them) and failed (alive, raised: they missed it)."""
    ok: dict = field(default_factory=dict)  # worker id -> the call's result
    lost: dict = field(default_factory=dict)  # worker id -> why
    hung: set = field(default_factory=set)
    failed: dict = field(default_factory=dict)
    sender_error: str | None = None

    @property
    def clean(self) -> bool:
        return not (self.lost or self.hung or self.failed or self.sender_error)


class GroupSync:
    def __init__(self, transport: str, sender, timeout_s: float, calls=None):
        self.transport, self.sender, self.timeout_s = transport, sender, timeout_s
        self.calls = calls or RayCalls()
        self.members: dict = {}  # worker id -> actor, in group rank order (rank = 1 + position)
        self.rebuilds = 0
        self.events: list[dict] = []  # teardowns: time, operation, what failed

    @property
    def watchdog_s(self) -> float:
        """The driver's bound on one operation: the transport's own timeout, and as long again for members
        to load what they received (or to notice a lost peer)."""
        return 2 * self.timeout_s

    def _sender(self, method: str, *args):
        return self.calls.call(self.sender, "transport_call", self.transport, method, *args)

    def _watch(self, sender_ref, member_refs: dict) -> Outcome:
        """Wait for the sender and every member, at most ``watchdog_s``; sort the results."""
        refs = ([sender_ref] if sender_ref is not None else []) + list(member_refs.values())
        _, pending = self.calls.wait(refs, self.watchdog_s)
        out = Outcome()
        for wid, ref in member_refs.items():
            if ref in pending:
                out.hung.add(wid)
                continue
            try:
                out.ok[wid] = self.calls.result(ref)
            except MemberLost as err:
                out.lost[wid] = str(err)
            except Exception as err:  # alive, but it missed this operation
                out.failed[wid] = f"{type(err).__name__}: {str(err)[:300]}"
        if sender_ref is not None:
            if sender_ref in pending:
                raise SenderLost(f"learner rank 0 is still blocked in the weight group after {self.watchdog_s:.0f} s")
            try:
                self.calls.result(sender_ref)
            except MemberLost as err:
                raise SenderLost(f"learner rank 0 died during a weight-group operation ({err})") from None
            except Exception as err:
                out.sender_error = f"{type(err).__name__}: {str(err)[:300]}"
        return out

    def teardown(self, why: str = "", cause: Outcome | None = None) -> None:
        """Sender and members leave the group (best effort, bounded): after a failure (``cause``: its members
        lost or blocked are not asked; the caller replaces them) or before a rebuild."""
        skip = {*cause.lost, *cause.hung} if cause else set()
        refs = {wid: self.calls.call(w, "leave_group", self.transport) for wid, w in self.members.items()
                if wid not in skip}
        self.members = {}
        self._watch(self._sender("close"), refs)
        if cause:
            log.warning("weight group (%s) torn down: %s", self.transport, why)
            self.events.append({"time": time.time(), "action": "teardown", "reason": why,
                                "hung": sorted(cause.hung), "lost": sorted(cause.lost)})

    def ensure(self, workers: dict) -> Outcome:
        """Make the group exactly ``workers`` (id -> actor); a rebuild when membership differs. A failed
        rebuild leaves no group: the caller drops the workers it reports and calls again."""
        if set(workers) == set(self.members):
            return Outcome(ok=dict.fromkeys(workers))
        if self.members:
            self.teardown()
        if not workers:
            return Outcome()
        try:
            address, port = self.calls.result(self._sender("endpoint"))
        except MemberLost as err:
            raise SenderLost(f"learner rank 0 died ({err})") from None
        spec = {"address": address, "port": port, "world_size": 1 + len(workers), "timeout_s": self.timeout_s}
        opened = self._sender("open", spec)
        out = self._watch(opened, {wid: self.calls.call(w, "join_group", self.transport, spec, 1 + i)
                                   for i, (wid, w) in enumerate(workers.items())})
        self.members = dict(workers)
        if not out.clean:
            self.teardown(f"rebuild over {sorted(workers)} failed: {_describe(out)}", out)
        else:
            self.rebuilds += 1
            log.info("weight group (%s) rebuilt over workers %s", self.transport, sorted(workers))
        return out

    def send(self, handle: dict) -> Outcome:
        """Broadcast ``handle``'s staged version to the members; on any failure the group is torn down."""
        refs = {wid: self.calls.call(w, "receive_weights", self.transport, handle["meta"], handle["version"])
                for wid, w in self.members.items()}
        out = self._watch(self._sender("send", handle["version"]), refs)
        if not out.clean:
            self.teardown(f"send of version {handle['version']} failed: {_describe(out)}", out)
        return out


def _describe(out: Outcome) -> str:
    parts = [f"{k} {v}" for k, v in (("lost", out.lost), ("hung", sorted(out.hung)), ("failed", out.failed))
             if v]
    if out.sender_error:
        parts.append(f"sender: {out.sender_error}")
    return "; ".join(parts)
