"""The watchdog that takes a dead worker's engine processes with it."""
import os
import signal
import subprocess
import sys
import time

import psutil


def test_descendants_die_with_their_killed_parent(tmp_path):
    # a parent that starts the watchdog, then a grandchild that would outlive it (as vLLM's engine core does)
    script = tmp_path / "parent.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "from toolmaster.rollout import reaper\n"
        "reaper.watch(__import__('os').getpid())\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(300)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    child = psutil.Process(int(parent.stdout.readline()))
    time.sleep(2.5)  # the watchdog has seen the child
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    child.wait(timeout=15)  # killed by the watchdog, not left running without a parent
    assert not child.is_running()
