"""Each hostile tool yields an error observation within its limit, and the next call works."""
import os
import time

import pytest

from toolmaster.tools.sandbox import SandboxPool

OK_SOURCE = "def double(x):\n    return {'y': x * 2}\n"

HOSTILE = {
    "loops forever": ("def f():\n    while True:\n        pass\n", "timed out"),
    "sleeps in C": ("import time\ndef f():\n    time.sleep(60)\n", "timed out"),
    "allocates 10 GB": ("def f():\n    return len(bytearray(10 * 1024 ** 3))\n", "memory"),
    "writes outside scratch": ("def f():\n    open('/tmp/toolmaster-escape.txt', 'w').write('x')\n", "outside the scratch"),
    "deletes outside scratch": ("import os\ndef f():\n    os.remove('/etc/hostname')\n", "outside scratch"),
    "forks repeatedly": ("import os\ndef f():\n    while True:\n        os.fork()\n", "os.fork is not allowed"),
    "spawns a process": ("import subprocess\ndef f():\n    subprocess.run(['true'])\n", "not allowed"),
    "opens a socket": ("import socket\ndef f():\n    socket.create_connection(('127.0.0.1', 9))\n", "not allowed"),
    "uses ctypes": ("import ctypes\ndef f():\n    ctypes.CDLL(None)\n", "not allowed"),
    "kills its process": ("import os\ndef f():\n    os._exit(3)\n", "crashed"),
    "recurses": ("def f():\n    return f()\n", "recursion"),
    "raises": ("def f():\n    raise ValueError('bad key')\n", "ValueError: bad key"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_tool_then_normal_call(sandbox, name):
    source, expected = HOSTILE[name]
    start = time.monotonic()
    result = sandbox.call(source, "f", {})
    elapsed = time.monotonic() - start
    assert not result.ok and result.content.startswith("error:") and expected in result.content, result.content
    assert elapsed < sandbox.timeout_s + 3  # within its limit (timeout plus the hard-kill grace)
    after = sandbox.call(OK_SOURCE, "double", {"x": 21})
    assert after.ok and after.content == '{"y": 42}'
    assert not os.path.exists("/tmp/toolmaster-escape.txt")


def test_scratch_is_writable_and_wiped_between_calls(sandbox):
    write = "def f():\n    open('note.txt', 'w').write('hi')\n    return open('note.txt').read()\n"
    assert sandbox.call(write, "f", {}).content == "hi"
    check = "import os\ndef f():\n    return os.listdir('.')\n"
    assert sandbox.call(check, "f", {}).content == "[]"


def test_output_is_capped(sandbox):
    result = sandbox.call("def f():\n    print('x' * 10**6)\n    return 'y' * 10**6\n", "f", {})
    assert result.ok and len(result.content) < sandbox.output_chars + 50 and "truncated" in result.content


def test_error_dict_and_bad_arguments_fail(sandbox):
    assert not sandbox.call("def f():\n    return {'error': 'nope'}\n", "f", {}).ok
    result = sandbox.call(OK_SOURCE, "double", {"z": 1})
    assert not result.ok and "unexpected keyword argument" in result.content
    assert not sandbox.call(OK_SOURCE, "missing", {}).ok


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
