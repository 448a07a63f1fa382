"""Hub ids through a local Hugging Face cache, offline as the tests run (HF_HUB_OFFLINE=1): the driver
resolves one snapshot folder and every later step (checks, actors) reads that folder."""
import shutil
from pathlib import Path

import pytest

from toolmaster.cli import main
from toolmaster.models.hub import is_hub_id, resolve_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # what HF_HOME=tmp/hf gives
    return cache


def _cache_with_tiny(cache: Path, tiny_model_dir: str) -> Path:
    repo = cache / "models--toolmaster-tests--tiny"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(tiny_model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def test_a_hub_id_resolves_to_its_cached_snapshot_offline(hf_cache, tiny_model_dir, tmp_path, capsys):
    snapshot = _cache_with_tiny(hf_cache, tiny_model_dir)
    assert resolve_model("toolmaster-tests/tiny") == str(snapshot)
    assert resolve_model("toolmaster-tests/tiny@main") == str(snapshot)
    # the CLI takes the id: the model passes every check (the data is what this run lacks)
    code = main(["sft", "--model", "toolmaster-tests/tiny", "--data", str(tmp_path / "none.jsonl"),
                 f"run_dir={tmp_path / 'r'}"])
    assert code == 2 and capsys.readouterr().err.startswith("toolmaster: sft data")


def test_a_hub_id_missing_from_the_cache_offline_is_one_line(hf_cache, tmp_path, capsys):
    code = main(["sft", "--model", "toolmaster-tests/absent", "--data", "x.jsonl", f"run_dir={tmp_path / 'r'}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "not in the Hugging Face cache" in err and "hf download toolmaster-tests/absent" in err


def test_local_paths_and_non_ids_are_left_as_they_are(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path) and resolve_model(None) is None
    assert is_hub_id("Qwen/Qwen2.5-7B-Instruct") and is_hub_id("Qwen/Qwen2.5-7B-Instruct@a09a354")
    assert not is_hub_id("runs/sft/checkpoints/latest") and not is_hub_id("./a/b") and not is_hub_id("model")
