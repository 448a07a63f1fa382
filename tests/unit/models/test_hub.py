"""Hub ids through a local Hugging Face cache (HF_HOME), offline as the user asked: the driver resolves one
snapshot folder and every later step (checks, actors) reads that folder."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_with_tiny(home: Path, tiny_model_dir: str) -> Path:
    repo = home / "hub" / "models--toolmaster-tests--tiny"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(tiny_model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def _run(home: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def test_a_hub_id_resolves_to_its_cached_snapshot_offline(tmp_path, tiny_model_dir):
    snapshot = _cache_with_tiny(tmp_path / "hf", tiny_model_dir)
    code = ("from toolmaster.models.hub import resolve_model as r; "
            "print(r('toolmaster-tests/tiny')); print(r('toolmaster-tests/tiny@main'))")
    out = _run(tmp_path / "hf", "-c", code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(snapshot), str(snapshot)]
    # the CLI takes the id: the model passes every check (the data is what this run lacks)
    cli = _run(tmp_path / "hf", "-m", "toolmaster.cli", "sft", "--model", "toolmaster-tests/tiny", "--data",
               str(tmp_path / "none.jsonl"), f"run_dir={tmp_path / 'r'}")
    assert cli.returncode == 2 and cli.stderr.startswith("toolmaster: sft data"), cli.stderr[-2000:]


def test_a_hub_id_missing_from_the_cache_offline_is_one_line(tmp_path):
    cli = _run(tmp_path / "empty", "-m", "toolmaster.cli", "sft", "--model", "toolmaster-tests/absent", "--data",
               "x.jsonl", f"run_dir={tmp_path / 'r'}")
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert "not in the Hugging Face cache" in cli.stderr and "hf download toolmaster-tests/absent" in cli.stderr


def test_local_paths_and_non_ids_are_left_as_they_are(tmp_path):
    from toolmaster.models.hub import is_hub_id, resolve_model

    assert resolve_model(str(tmp_path)) == str(tmp_path) and resolve_model(None) is None
    assert is_hub_id("Qwen/Qwen2.5-7B-Instruct") and is_hub_id("Qwen/Qwen2.5-7B-Instruct@a09a354")
    assert not is_hub_id("runs/sft/checkpoints/latest") and not is_hub_id("./a/b") and not is_hub_id("model")
