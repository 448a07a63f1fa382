"""`ray job submit` of ray_jobs/grpo.py against a local Ray head, as a user launches it."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RAY_BIN = str(Path(sys.executable).parent / "ray")


def _ray(*args, env, timeout=300):
    return subprocess.run([RAY_BIN, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _wait_for_dashboard(head: subprocess.Popen, log: Path, port: str, timeout: float = 120) -> None:
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        assert head.poll() is None, log.read_text()[-2000:]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=5)
            return
        except urllib.error.HTTPError:  # it answers (401 without the token): it is up
            return
        except OSError:
            time.sleep(2)
    raise AssertionError(f"the Ray head's dashboard did not answer on port {port} within {timeout} s")


def _forget_head(port: str) -> None:
    """`ray start` leaves the head's address for later `ray.init()` calls to join and only `ray stop`
    removes it; a stale one makes the next test's local Ray try to join a dead head."""
    from ray._private.utils import get_ray_address_file

    address_file = Path(get_ray_address_file(None))
    if address_file.exists() and address_file.read_text().strip().endswith(f":{port}"):
        address_file.unlink()


def test_ray_job_submit_grpo(tmp_path, tiny_model_dir):
    """The launch path: token authentication on explicitly for the head and the job CLI alike (Ray
    enables it for `ray start --head` whenever ~/.ray/auth_token exists, but its job CLI sends the token only
    in token mode), with this test's own token, so neither earlier tests nor that file matter."""
    from tests.conftest import stop_ray

    stop_ray()  # the session's fleets hold memory and cores the new head's job agent needs to start
    import uuid

    token = tmp_path / "auth_token"
    token.write_text(uuid.uuid4().hex)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)})
    port, dash = "6391", "8271"
    head_log = tmp_path / "head.log"
    # --block ties the head's processes to this one child: terminating it stops this head only, where
    # `ray stop --force` would stop every Ray instance on the machine (an experiment's included)
    head = subprocess.Popen([RAY_BIN, "start", "--head", "--block", f"--port={port}",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=4",
                             "--disable-usage-stats"], env=env, stdout=head_log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    _wait_for_dashboard(head, head_log, dash)
    try:
        work = tmp_path / "work"
        shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "wandb", "__pycache__"))
        run_dir = tmp_path / "run"
        t = time.time()
        for _ in range(12):  # a just-started head answers "No available agent" until its job agent is up
            job = _ray("job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(work), "--",
                       sys.executable, "ray_jobs/grpo.py", "--model", tiny_model_dir, "--run-dir", str(run_dir),
                       "grpo.steps=1", "grpo.prompts_per_step=2", "grpo.group_size=2", "env.max_turns=2",
                       "rollout.generation.max_new_tokens=16", env=env, timeout=900)
            if "No available agent" not in job.stdout + job.stderr:
                break
            time.sleep(10)
        assert job.returncode == 0, (job.stdout[-3000:], job.stderr[-3000:])
        assert "succeeded" in (job.stdout + job.stderr).lower()
        assert (run_dir / "metrics.jsonl").exists() and (run_dir / "checkpoints" / "latest" / "config.json").exists()
        assert time.time() - t > 0
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, 9)
            head.wait()
        _forget_head(port)
    with socket.socket() as probe:  # this head is gone (its GCS port is free), stopped without `ray stop`
        assert probe.connect_ex(("127.0.0.1", int(port))) != 0
