"""`toolmaster check` on every shipped config: the 7B configs are checked against Qwen2.5-7B-Instruct's real
config.json and tokenizer (no weights: the checks read only those), never starting Ray."""
import shutil

import pytest

from tests.conftest import DATA, QWEN, ROOT
from toolmaster.cli import main

SHARED_TOOLHOP = f"env.toolhop.data={DATA / 'toolhop' / 'toolhop_100.jsonl'}"
SHARED_STB = f"env.stabletoolbench.data={DATA / 'stabletoolbench' / 'test_instruction'}"


@pytest.fixture(scope="module")
def qwen7b_without_weights(tmp_path_factory, qwen_tokenizer):
    folder = tmp_path_factory.mktemp("qwen7b")
    shutil.copyfile(QWEN / "config_7b.json", folder / "config.json")
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "generation_config.json"):
        shutil.copyfile(QWEN / name, folder / name)
    # the hub's Qwen2.5 repositories also ship tokenizer.json, which loads in a fraction of a second
    qwen_tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    return str(folder)


CONFIGS = {  # config -> (the command it is for, its model, overrides pointing its data at ../shared)
    "grpo_tiny.yaml": ("grpo", "tiny", []),
    "quickstart.yaml": ("quickstart", None, []),
    "qwen2.5-7b-1node.yaml": ("grpo", "7b", [SHARED_TOOLHOP]),
    "qwen2.5-7b-multinode.yaml": ("grpo", "7b", [SHARED_TOOLHOP]),
    "stabletoolbench-gpu.yaml": ("eval", "7b", [SHARED_STB]),
    "toolhop_eval.yaml": ("eval", "7b", []),
}


def test_every_shipped_config_is_listed():
    assert sorted(p.name for p in (ROOT / "configs").glob("*.yaml")) == sorted(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_shipped_config_passes_check(name, qwen7b_without_weights, tiny_model_dir, capsys, monkeypatch):
    import toolmaster.ray_utils

    monkeypatch.setattr(toolmaster.ray_utils, "init_ray", lambda *a, **k: pytest.fail("check started Ray"))
    command, model, overrides = CONFIGS[name]
    model_args = [] if model is None else ["--model", tiny_model_dir if model == "tiny" else qwen7b_without_weights]
    code = main(["check", "--config", str(ROOT / "configs" / name), "--command", command, *model_args, *overrides])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[FAILED]" not in out and "checks pass" in out


def test_what_the_7b_configs_lacked_before_is_caught(qwen7b_without_weights, capsys):
    """Both 7B configs once had no ToolHop train split (test_fraction 1.0) and data paths under ../shared."""
    code = main(["check", "--config", str(ROOT / "configs" / "qwen2.5-7b-1node.yaml"), "--model",
                 qwen7b_without_weights, SHARED_TOOLHOP, "env.toolhop.test_fraction=1.0",
                 "grpo.eval_every=5", "grpo.eval_split=train"])
    out = capsys.readouterr().out
    assert code == 1
    assert "[FAILED] split train: the train split: toolhop's train split is empty (set env.toolhop.test_fraction" in out
    assert "[FAILED] held-out evaluation: grpo.eval_split = 'train'" in out
    assert "[not checkable here] CUDA / NCCL" in out and "[not checkable here] model weights" in out
    code = main(["check", "--config", str(ROOT / "configs" / "qwen2.5-7b-1node.yaml"), "--model",
                 qwen7b_without_weights])  # as shipped: its data lives on the cluster, not here
    assert code == 1 and "[FAILED] environment: env.name = 'toolhop'" in capsys.readouterr().out
