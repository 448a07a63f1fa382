"""benchmarks/gpu_check.py (the single-GPU device check) at toy size on the CPU: its code path (DeepSpeed
ZeRO-2/3 steps through the learner's losses and DeepSpeed config, the plan's estimate, one process per
configuration, the time budget) runs here; its figures come from a GPU machine (docs/gpu-check.md)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check
from toolmaster.config import build_config
from toolmaster.plan import ModelShape, learner_plan

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
QWEN = ROOT.parent / "shared" / "models" / "qwen2.5-instruct"
MODELS = ("qwen2.5-0.5b-toy", "qwen2.5-7b-width-toy")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_toy_run_reports_every_configuration(tmp_path):
    out = tmp_path / "toy.json"
    proc = run("--toy", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert sorted((r["model"], r["zero"], r["grad_ckpt"], r["kind"]) for r in rows) == sorted(
        (m, z, c, k) for m in MODELS for z in (2, 3) for c in (False, True) for k in ("sft", "grpo"))
    for r in rows:
        assert r["status"] == "ok", r
        assert r["tokens_per_s"] > 0 and r["step_s"] > 0 and math.isfinite(r["loss"]), r
        assert r["param_dtype"] == "bfloat16" and r["device"] == "cpu"
        assert r["peak_gb"] is None and r["ratio"] is None and r["plan_gb"] > 0  # no CUDA figures on the CPU
        assert r["grad_norm"] is not None and math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0
    # SFT: random weights on random tokens, so the mean NLL is about ln(vocab); GRPO: the clipped objective
    # with its statistics, a different loss on the same tokens
    for r in rows:
        twin = next(t for t in rows if t["kind"] != r["kind"] and
                    (t["model"], t["zero"], t["grad_ckpt"]) == (r["model"], r["zero"], r["grad_ckpt"]))
        if r["kind"] == "sft":
            assert abs(r["loss"] - math.log(gpu_check.TOY["vocab_size"])) < 0.5, r
            assert r["stats"] == {}
        else:
            assert {"clip_fraction", "ratio_mean", "ratio_max", "kl"} <= set(r["stats"])
            assert r["stats"]["clip_fraction"] > 0 and abs(r["loss"]) < 5 and r["loss"] != twin["loss"]
    # the estimate is toolmaster plan's for the same settings
    r = next(r for r in rows if r["model"] == MODELS[0] and r["zero"] == 3 and r["grad_ckpt"])
    cfg = build_config(overrides=["learner.num_ranks=1", "learner.zero_stage=3", "learner.dtype=bfloat16",
                                  "learner.gradient_checkpointing=true", f"learner.max_tokens_per_microbatch="
                                  f"{r['tokens']}", "learner.logprob_chunk_tokens=16"])
    plan = learner_plan(cfg, ModelShape.from_config({**gpu_check.QWEN["qwen2.5-0.5b"], **gpu_check.TOY}),
                        r["seq_len"])
    assert r["plan_total_gb"] == pytest.approx(plan["total"])
    assert r["plan_gb"] == pytest.approx(sum(plan[k] for k in gpu_check.STEP_ITEMS if k in plan))
    assert doc["forbidden_imports"] == [] and "ray/vllm imported: no" in proc.stdout
    assert {"ray", "vllm"}.isdisjoint(doc["third_party_modules"]) and "deepspeed" in doc["third_party_modules"]
    assert proc.stdout.count("n/a (cpu)") == len(rows) and "16 rows: 16 ok" in proc.stdout


def test_an_oom_is_a_row_and_the_other_configurations_go_on(tmp_path):
    out = tmp_path / "oom.json"
    # ckpt off: the process dies after a CUDA OOM message; ckpt on: its GRPO step raises torch.OutOfMemoryError
    proc = run("--toy", "--out", str(out), "--models", "qwen2.5-0.5b", "--zero", "2", "--isolate", "config",
               "--fake-oom", "qwen2.5-0.5b-toy:2:off:sft:exit", "--fake-oom", "qwen2.5-0.5b-toy:2:on:grpo")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    status = {(r["grad_ckpt"], r["kind"]): r["status"] for r in json.loads(out.read_text())["rows"]}
    assert status == {(False, "sft"): "OOM", (False, "grpo"): "OOM", (True, "sft"): "ok", (True, "grpo"): "OOM"}
    assert "4 rows: 1 ok, 3 OOM" in proc.stdout


def test_an_exhausted_budget_skips_with_a_message(tmp_path):
    out = tmp_path / "budget.json"
    proc = run("--toy", "--out", str(out), "--budget-s", "0")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 16 and {r["status"] for r in rows} == {"skipped"}
    assert "time budget of 0 s exhausted" in proc.stdout


def test_help_names_every_wheel_it_needs():
    proc = run("--help")
    assert proc.returncode == 0
    for _module, requirement, where in gpu_check.REQUIRED:
        if where == "wheel":
            assert requirement in proc.stdout, requirement
    assert "pip wheel deepspeed==0.19.8 --no-deps -w wheels/" in proc.stdout


@pytest.mark.skipif(not QWEN.is_dir(), reason="../shared/models/qwen2.5-instruct is not beside this checkout")
def test_the_shapes_are_qwen25s_published_configs():
    for name, file in (("qwen2.5-0.5b", "config_0.5b.json"), ("qwen2.5-7b", "config_7b.json")):
        published = json.loads((QWEN / file).read_text())
        assert gpu_check.QWEN[name] == {k: published[k] for k in gpu_check.QWEN[name]}
