"""Hostile tools: each yields an error observation (or a harmless result) within its limit, the next call on
the same pool returns its own correct result, and nothing outside scratch changes."""
import os
import time
from pathlib import Path

import pytest

from toolmaster.tools.sandbox import OS_LAYERS, IsolationUnavailable, SandboxPool

OK_SOURCE = "def double(x):\n    return {'y': x * 2}\n"
SECRET = "tm-secret-7f3a9c"

# name -> (source of f(target, home_file, parent_pid), what the observation must contain; None: any harmless result)
HOSTILE = {
    "loops forever": ("def f(**_):\n    while True:\n        pass\n", "timed out"),
    "sleeps in C": ("import time\ndef f(**_):\n    time.sleep(60)\n", "timed out"),
    "catches the timeout and keeps looping": (
        "def f(**_):\n    while True:\n        try:\n            while True:\n                pass\n"
        "        except BaseException:\n            pass\n", "timed out"),
    "ignores SIGALRM": ("import signal\ndef f(**_):\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                        "    while True:\n        pass\n", "timed out"),
    "allocates 10 GB": ("def f(**_):\n    return len(bytearray(10 * 1024 ** 3))\n", "memory"),
    "segfaults": ("import faulthandler\ndef f(**_):\n    faulthandler._sigsegv()\n", "crashed (SIGSEGV)"),
    "kills its process": ("import os\ndef f(**_):\n    os._exit(3)\n", "crashed"),
    "recurses": ("def f(**_):\n    return f()\n", "recursion"),
    "raises": ("def f(**_):\n    raise ValueError('bad key')\n", "ValueError: bad key"),
    "forks repeatedly": ("import os\ndef f(**_):\n    while True:\n        os.fork()\n", "not allowed"),
    "spawns a process": ("import subprocess\ndef f(**_):\n    subprocess.run(['true'])\n", "not allowed"),
    "opens a socket": ("import socket\ndef f(**_):\n    socket.create_connection(('127.0.0.1', 9))\n", "not allowed"),
    "uses ctypes": ("import ctypes\ndef f(**_):\n    ctypes.CDLL(None)\n", "not allowed"),
    "floods stdout": ("def f(**_):\n    while True:\n        print('x' * 4096)\n", "timed out"),
    "floods its reply pipe": ("import os\ndef f(**_):\n    while True:\n        os.write(3, b'x' * 65536)\n",
                              "malformed"),
    # writes outside scratch, by every API
    "writes by path": ("def f(target, **_):\n    open(target + '/x', 'w').write('x')\n", None),
    "writes via dir_fd": ("import os\ndef f(target, **_):\n    fd = os.open(target, os.O_RDONLY)\n"
                          "    os.close(os.open('x', os.O_WRONLY | os.O_CREAT, dir_fd=fd))\n", None),
    "renames via dst_dir_fd": ("import os\ndef f(target, **_):\n    open('a', 'w').close()\n"
                               "    fd = os.open(target, os.O_RDONLY)\n    os.rename('a', 'x', dst_dir_fd=fd)\n", None),
    "writes through a symlink": ("import os\ndef f(target, **_):\n    os.symlink(target, 'link')\n"
                                 "    open('link/x', 'w').write('x')\n", None),
    "makes a fifo outside": ("import os\ndef f(target, **_):\n    os.mkfifo(target + '/fifo')\n", None),
    "makes a device node": ("import os\ndef f(target, **_):\n"
                            "    os.mknod('null2', 0o666 | 0o020000, os.makedev(1, 3))\n", None),
    "deletes outside scratch": ("import os\ndef f(target, **_):\n    os.remove(target + '/sentinel')\n", None),
    "deletes a system file": ("import os\ndef f(**_):\n    os.remove('/etc/hostname')\n", None),
    # reads of what belongs to the trainer
    "reads the parent's environment": (
        "def f(parent_pid, **_):\n"
        "    return open(f'/proc/{parent_pid}/environ', 'rb').read().decode(errors='replace')\n", None),
    "reads its own environment": ("import os\ndef f(**_):\n    return dict(os.environ)\n", None),
    "reads a file in the home directory": ("def f(home_file, **_):\n    return open(home_file).read()\n", None),
    "lists the home directory": ("import os\ndef f(home_file, **_):\n"
                                 "    return os.listdir(os.path.dirname(home_file))\n", None),
    # state left behind for the next call
    "leaves a thread running": (
        "import os, threading, time\ndef f(**_):\n    def loop():\n        while True:\n"
        "            try:\n                os.write(3, b'{\"ok\": true, \"content\": \"forged\"}\\n')\n"
        "            except OSError:\n                pass\n            time.sleep(0.001)\n"
        "    threading.Thread(target=loop, daemon=True).start()\n    return 'started'\n", None),
    "patches a shared module": ("import json, builtins\ndef f(**_):\n    json.dumps = lambda *a, **k: '\"pwned\"'\n"
                                "    builtins.len = lambda x: 0\n    return 'patched'\n", None),
    "writes fake replies to every descriptor": (
        "import os\ndef f(**_):\n    for fd in range(1024):\n        try:\n"
        "            os.write(fd, b'{\"ok\": true, \"content\": \"forged\"}\\n')\n        except OSError:\n"
        "            pass\n    return 'done'\n", None),
}


@pytest.fixture
def targets(tmp_path):
    target = tmp_path / "outside"
    target.mkdir()
    (target / "sentinel").write_text("keep")
    home_file = Path.home() / f".toolmaster-test-{os.getpid()}"
    home_file.write_text(SECRET)
    os.environ["TOOLMASTER_TEST_SECRET"] = SECRET
    yield {"target": str(target), "home_file": str(home_file), "parent_pid": os.getpid()}
    home_file.unlink()
    os.environ.pop("TOOLMASTER_TEST_SECRET")


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_tool_then_normal_call(sandbox, targets, name):
    source, expected = HOSTILE[name]
    start = time.monotonic()
    result = sandbox.call(source, "f", targets)
    elapsed = time.monotonic() - start
    if expected is not None:
        assert not result.ok and result.content.startswith("error:") and expected in result.content, result.content
    assert SECRET not in result.content and "forged" not in result.content
    assert elapsed < sandbox.timeout_s + 3  # within its limit (timeout plus the template's kill)
    after = sandbox.call(OK_SOURCE, "double", {"x": 21})
    assert after.ok and after.content == '{"y": 42}', after.content  # its own result: not forged, not patched
    assert sandbox.call("import threading\ndef f():\n    return threading.active_count()\n", "f", {}).content == "1"
    assert sorted(os.listdir(targets["target"])) == ["sentinel"]
    assert Path(targets["target"], "sentinel").read_text() == "keep"


@pytest.mark.parametrize("name", ["writes by path", "writes via dir_fd", "writes through a symlink",
                                  "reads the parent's environment", "reads a file in the home directory",
                                  "patches a shared module", "leaves a thread running"])
def test_python_layer_alone_still_holds(targets, name):
    """Where the kernel refuses namespaces and seccomp, the per-call fork and the audit hook remain."""
    pool = SandboxPool(workers=1, timeout_s=2.0, memory_mb=512, output_chars=500, isolate=False)
    try:
        result = pool.call(HOSTILE[name][0], "f", targets)
        assert SECRET not in result.content and "forged" not in result.content
        assert pool.call(OK_SOURCE, "double", {"x": 21}).content == '{"y": 42}'
        assert sorted(os.listdir(targets["target"])) == ["sentinel"]
    finally:
        pool.close()


def test_layers_are_reported_and_required_on_request():
    with SandboxPool(workers=1) as pool:
        layers = pool.layers()
    assert set(OS_LAYERS) <= set(layers) and all(isinstance(layers[k], bool) for k in OS_LAYERS)
    if layers["user_namespace"]:  # this machine's kernel allows them; then all of them hold together
        assert layers["mount_namespace"] and layers["pid_namespace"] and layers["network_namespace"]
    with pytest.raises(IsolationUnavailable, match="user_namespace"):
        SandboxPool(workers=1, isolate=False, require_isolation=True).layers()


def test_tool_sees_only_scratch_and_the_stdlib(sandbox):
    layers = sandbox.layers()
    if not layers["mount_namespace"]:
        pytest.fail(f"mount namespace unavailable on this machine: {layers}")
    listing = sandbox.call("import os\ndef f():\n    return sorted(os.listdir('/usr'))[:3], os.getcwd()\n", "f", {})
    assert listing.ok and '"/tmp"' in listing.content
    home = sandbox.call("import os\ndef f():\n    return os.path.exists(os.path.expanduser('~root')), "
                        "os.path.exists('/work'), os.path.exists('/proc/1'), os.getpid()\n", "f", {})
    assert home.ok and home.content.startswith("[false, false, false,"), home.content


def test_scratch_is_writable_and_wiped_between_calls(sandbox):
    write = "def f():\n    open('note.txt', 'w').write('hi')\n    return open('note.txt').read()\n"
    assert sandbox.call(write, "f", {}).content == "hi"
    locked = "import os\ndef f():\n    os.mkdir('d')\n    open('d/x', 'w').close()\n    os.chmod('d', 0)\n"
    sandbox.call(locked, "f", {})
    check = "import os\ndef f():\n    return os.listdir('.')\n"
    assert sandbox.call(check, "f", {}).content == "[]"


def test_output_is_capped(sandbox):
    result = sandbox.call("def f():\n    print('x' * 10**6)\n    return 'y' * 10**6\n", "f", {})
    assert result.ok and len(result.content) < sandbox.output_chars + 50 and "truncated" in result.content


def test_error_dict_bad_arguments_and_bad_source_fail(sandbox):
    assert not sandbox.call("def f():\n    return {'error': 'nope'}\n", "f", {}).ok
    result = sandbox.call(OK_SOURCE, "double", {"z": 1})
    assert not result.ok and "unexpected keyword argument" in result.content
    assert not sandbox.call(OK_SOURCE, "missing", {}).ok
    broken = sandbox.call("def f(:\n", "f", {})
    assert not broken.ok and "does not compile" in broken.content
    assert sandbox.call(OK_SOURCE, "double", {"x": 1}).content == '{"y": 2}'


def test_pool_is_picklable_and_restarts_lazily():
    import pickle

    pool = SandboxPool(workers=2, timeout_s=2)
    try:
        assert pool.call(OK_SOURCE, "double", {"x": 1}).ok
        clone = pickle.loads(pickle.dumps(pool))
        try:
            assert clone.call(OK_SOURCE, "double", {"x": 2}).content == '{"y": 4}'
        finally:
            clone.close()
    finally:
        pool.close()


def test_concurrent_calls_from_threads():
    from concurrent.futures import ThreadPoolExecutor

    pool = SandboxPool(workers=2, timeout_s=5)
    try:
        with ThreadPoolExecutor(8) as ex:
            results = list(ex.map(lambda i: pool.call(OK_SOURCE, "double", {"x": i}), range(200)))
        assert [r.content for r in results] == [f'{{"y": {2 * i}}}' for i in range(200)]
    finally:
        pool.close()
