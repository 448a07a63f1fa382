"""A watchdog for a process's descendants: when the process dies (even by SIGKILL), they are killed too.

vLLM runs its engine core in child processes. A rollout worker killed by Ray, the OS or a dying driver
would otherwise leave them running without a parent, each holding its model and KV cache.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

_POLL_S = 1.0


def watch(parent_pid: int) -> subprocess.Popen:
    """Start the watchdog for ``parent_pid`` in its own session (a kill of the parent's group spares it)."""
    return subprocess.Popen([sys.executable, "-m", "toolmaster.rollout.reaper", str(parent_pid)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _descendants(parent, me: int) -> dict:
    import psutil

    try:
        return {(p.pid, p.create_time()): p for p in parent.children(recursive=True) if p.pid != me}
    except psutil.Error:
        return {}


def main(parent_pid: int) -> None:
    import psutil

    me = os.getpid()
    try:
        parent = psutil.Process(parent_pid)
    except psutil.NoSuchProcess:
        return
    known: dict = {}
    while parent.is_running() and parent.status() != psutil.STATUS_ZOMBIE:
        known.update(_descendants(parent, me))  # remembered while the tree exists: orphans lose their parent link
        known = {k: p for k, p in known.items() if p.is_running()}
        time.sleep(_POLL_S)
    for proc in known.values():
        try:
            if proc.is_running():  # is_running also checks the creation time: a reused pid is not killed
                proc.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":
    main(int(sys.argv[1]))
