"""The transport-agnostic group logic (weights/group.py) against fake actors: a rebuild when membership
changes, none when it does not, and the watchdog's paths (a member lost, a member blocked past the
deadline, a sender that fails), each ending with the group torn down."""
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import pytest

from toolmaster.weights.group import GroupSync, MemberLost, SenderLost


class Dead(Exception):
    pass


class FakeCalls:
    """Calls run on threads; an actor's method may block (``hang``) or die (``Dead`` → MemberLost)."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(16)
        self.log: list[tuple] = []
        self.killed: list = []

    def call(self, actor, method, *args):
        self.log.append((actor.name, method, *args[:1]))
        return self.pool.submit(getattr(actor, method), *args)

    def wait(self, refs, timeout):
        done, pending = wait_futures(refs, timeout=timeout)
        return [r for r in refs if r in done], [r for r in refs if r in pending]

    def result(self, ref):
        try:
            return ref.result()
        except Dead as err:
            raise MemberLost(str(err)) from None

    def kill(self, actor):
        self.killed.append(actor.name)


class FakeSender:
    name = "sender"

    def __init__(self):
        self.groups, self.sent, self.fail_send = [], [], None

    def transport_call(self, transport, method, *args):
        if method == "endpoint":
            return "127.0.0.1", 1000 + len(self.groups)
        if method == "open":
            self.groups.append(args[0])
        if method == "send":
            if self.fail_send:
                raise RuntimeError(self.fail_send)
            self.sent.append(args[0])
        return None


class FakeWorker:
    def __init__(self, name, hang_on=None, die_on=None, gate=None):
        self.name, self.hang_on, self.die_on, self.gate = name, hang_on, die_on, gate
        self.version, self.rank = 0, None

    def _maybe(self, method):
        if method == self.die_on:
            raise Dead(f"{self.name} died")
        if method == self.hang_on:
            self.gate.wait(10)

    def join_group(self, transport, spec, rank):
        self._maybe("join_group")
        self.rank = rank

    def receive_weights(self, transport, meta, version):
        self._maybe("receive_weights")
        self.version = version
        return version

    def leave_group(self, transport):
        self.rank = None


HANDLE = {"version": 1, "group": "fake", "meta": []}


def _sync(timeout_s=0.2):
    calls, sender = FakeCalls(), FakeSender()
    return GroupSync("fake", sender, timeout_s, calls=calls), calls, sender


def test_the_group_is_rebuilt_only_when_membership_changes():
    sync, calls, sender = _sync()
    a, b, c = FakeWorker("a"), FakeWorker("b"), FakeWorker("c")
    assert sync.ensure({0: a, 1: b}).clean and sync.send(HANDLE).clean
    assert (a.rank, b.rank, a.version, b.version) == (1, 2, 1, 1)
    assert sync.ensure({0: a, 1: b}).clean and sync.rebuilds == 1  # same members: the group stands
    assert len(sender.groups) == 1 and sender.groups[0]["world_size"] == 3
    # b replaced by c, and a newcomer d: a new group over exactly the live workers, on a new rendezvous
    d = FakeWorker("d")
    assert sync.ensure({0: a, 2: c, 3: d}).clean and sync.rebuilds == 2
    assert ("b", "leave_group", "fake") in calls.log and ("sender", "transport_call", "fake") in calls.log
    assert sender.groups[1]["world_size"] == 4 and sender.groups[1]["port"] != sender.groups[0]["port"]
    assert (a.rank, c.rank, d.rank, b.rank) == (1, 2, 3, None)
    out = sync.send({**HANDLE, "version": 2})
    assert out.ok == {0: 2, 2: 2, 3: 2} and sender.sent == [1, 2]


def test_a_member_lost_during_the_send_tears_the_group_down():
    sync, calls, sender = _sync()
    a, b = FakeWorker("a"), FakeWorker("b", die_on="receive_weights")
    sync.ensure({0: a, 1: b})
    out = sync.send(HANDLE)
    assert out.lost == {1: "b died"} and out.ok == {0: 1} and not out.clean
    assert sync.members == {} and sync.events[-1]["lost"] == [1]
    assert a.rank is None  # the survivor left the broken group; the next ensure rebuilds over it alone
    assert sync.ensure({0: a}).clean and a.rank == 1 and sender.groups[-1]["world_size"] == 2


def test_a_member_blocked_past_the_watchdog_is_reported_hung_and_the_driver_does_not_hang():
    import threading
    import time

    gate = threading.Event()
    sync, calls, sender = _sync(timeout_s=0.1)
    a, b = FakeWorker("a"), FakeWorker("b", hang_on="receive_weights", gate=gate)
    sync.ensure({0: a, 1: b})
    start = time.time()
    out = sync.send(HANDLE)
    assert time.time() - start < sync.watchdog_s + 1
    assert out.hung == {1} and out.ok == {0: 1}
    assert not any(entry[0] == "b" and entry[1] == "leave_group" for entry in calls.log)  # not asked: it is killed
    assert sync.members == {} and sync.events[-1]["hung"] == [1]
    gate.set()


def test_a_failed_send_tears_down_and_a_lost_sender_raises():
    sync, calls, sender = _sync()
    a = FakeWorker("a")
    sync.ensure({0: a})
    sender.fail_send = "Timed out waiting 100ms for send operation to complete"
    out = sync.send(HANDLE)
    assert out.sender_error.startswith("RuntimeError: Timed out") and sync.members == {}
    sync.sender = type("Gone", (), {"name": "gone", "transport_call": lambda *a: (_ for _ in ()).throw(Dead("x"))})()
    with pytest.raises(SenderLost, match="died"):
        sync.ensure({0: a})


def test_a_failed_rebuild_reports_the_worker_that_could_not_join():
    sync, calls, sender = _sync()
    a, b = FakeWorker("a"), FakeWorker("b", die_on="join_group")
    out = sync.ensure({0: a, 1: b})
    assert out.lost == {1: "b died"} and sync.members == {} and sync.rebuilds == 0
    assert sync.ensure({0: a}).clean and sync.rebuilds == 1
