"""Device check: learner-only SFT and GRPO steps on one GPU, peak CUDA memory against `toolmaster plan`.

For a single-GPU machine that has torch and transformers but no Ray and no vLLM. Every configuration of
{Qwen2.5-0.5B's shape, Qwen2.5-7B's width with as many layers as fit} x {ZeRO-2, ZeRO-3} x {gradient
checkpointing off, on} x {SFT, GRPO} runs one bf16 DeepSpeed step on random weights and random token ids,
through the learner's own pieces (toolmaster.learner.losses, the learner's DeepSpeed config, torch's AdamW:
no compiled DeepSpeed op), with a single-process distributed group (nccl on CUDA, gloo on CPU). Each row:
peak CUDA memory of the step (torch.cuda.max_memory_allocated after a reset), the plan's estimate for the
same settings (toolmaster.plan.learner_plan, train-step items), their ratio, tokens/s and step time. Each
configuration runs in its own process, so an OOM is a row and the rest go on; a time budget (default 8 min)
skips what is left when it runs out.

Wheels it needs beside torch and transformers (the GPU image has neither DeepSpeed nor pydantic):
  deepspeed==0.19.8          pip wheel deepspeed==0.19.8 --no-deps -w wheels/
  hjson==3.1.0               (DeepSpeed)
  pydantic==2.14.4           (DeepSpeed's config, toolmaster.config)
  pydantic-core==2.50.5      (binary: the cp312 manylinux_2_17_x86_64 wheel for the GPU machine's Python 3.12)
  annotated-types==0.8.0, typing-inspection==0.4.5, typing-extensions==4.16.0   (pydantic)
and, present on the GPU image (carry them too where they are not): pyyaml, numpy, packaging, psutil,
py-cpuinfo, msgpack, einops, ninja, tqdm. It checks for each at start and names what is missing.

    python3 benchmarks/gpu_check.py --out gpu_check.json          # GPU: 16 rows within --budget-s
    python3 benchmarks/gpu_check.py --toy --out toy.json          # CPU at toy size, same code path, < 1 min

docs/gpu-check.md: building and carrying the wheels, the exact commands, the output format.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))  # this checkout's toolmaster, also where it is not installed

# (import name, requirement, where it comes from on the GPU machine)
REQUIRED = [
    ("torch", "torch", "image"), ("transformers", "transformers", "image"),
    ("deepspeed", "deepspeed==0.19.8", "wheel"), ("hjson", "hjson==3.1.0", "wheel"),
    ("pydantic", "pydantic==2.14.4", "wheel"), ("pydantic_core", "pydantic-core==2.50.5", "wheel"),
    ("annotated_types", "annotated-types==0.8.0", "wheel"), ("typing_inspection", "typing-inspection==0.4.5", "wheel"),
    ("typing_extensions", "typing-extensions==4.16.0", "wheel"),
    ("yaml", "pyyaml", "image"), ("numpy", "numpy", "image"), ("packaging", "packaging", "image"),
    ("psutil", "psutil", "image"), ("cpuinfo", "py-cpuinfo", "image"), ("msgpack", "msgpack", "image"),
    ("einops", "einops", "image"), ("ninja", "ninja", "image"), ("tqdm", "tqdm", "image"),
]
FORBIDDEN = ("ray", "vllm")  # absent on the GPU machine: nothing this check imports may need them

# config.json of Qwen2.5-0.5B-Instruct and Qwen2.5-7B-Instruct (../shared/models/qwen2.5-instruct), the fields
# that set the shape; kept here because that folder does not travel to the GPU machine (a test compares them)
QWEN = {
    "qwen2.5-0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                     "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
                     "rope_theta": 1000000.0},
    "qwen2.5-7b": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                   "tie_word_embeddings": False, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
                   "rope_theta": 1000000.0},
}
TOY = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 2,
       "num_key_value_heads": 1, "vocab_size": 512, "max_position_embeddings": 256}
# the plan's items that a train step holds (a later plan may add publish/checkpoint gathers to its total)
STEP_ITEMS = ("weights", "gradients", "optimizer", "buffers", "reference", "activations", "logprobs")
GB = 1e9  # the plan's unit


# ---------------------------------------------------------------------------------------------- parent
def check_requirements() -> None:
    missing = [(req, where) for mod, req, where in REQUIRED if importlib.util.find_spec(mod) is None]
    if missing:
        lines = [f"  {req:<28} ({'carry its wheel' if where == 'wheel' else 'on the GPU image; carry a wheel'})"
                 for req, where in missing]
        sys.exit("gpu_check: missing Python packages:\n" + "\n".join(lines) + "\nInstall the carried wheels with\n"
                 "  python3 -m pip install --no-index --no-deps --target /tmp/site wheels/*.whl && "
                 "export PYTHONPATH=/tmp/site\n(docs/gpu-check.md)")
    try:
        import toolmaster.config  # noqa: F401
        import toolmaster.plan  # noqa: F401
    except ImportError as err:
        sys.exit(f"gpu_check: cannot import toolmaster's plan ({err}); see the wheel list in --help")


def learner_config(c: dict):
    from toolmaster.config import build_config

    overrides = ["learner.num_ranks=1", f"learner.zero_stage={c['zero']}", f"learner.dtype={c['dtype']}",
                 f"learner.gradient_checkpointing={str(c['grad_ckpt']).lower()}",
                 f"learner.max_tokens_per_microbatch={c['batch'] * c['seq_len']}",
                 f"learner.backend={'nccl' if c['device'] == 'cuda' else 'gloo'}"]
    if c.get("chunk") is not None:
        overrides.append(f"learner.logprob_chunk_tokens={c['chunk']}")
    return build_config(overrides=overrides)


def plan_estimate(c: dict) -> dict:
    """toolmaster plan's per-rank learner estimate for configuration ``c``, in GB: the train-step items,
    their sum (``step``) and the plan's own total."""
    from toolmaster.plan import ModelShape, learner_plan

    shape = ModelShape.from_config(c["model_config"])
    plan = learner_plan(learner_config(c), shape, c["seq_len"])
    items = {k: plan[k] for k in STEP_ITEMS if k in plan}
    return {"items": items, "step": sum(items.values()), "total": plan["total"], "params": shape.params}


def run_probe(env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--probe"], env=env, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("PROBE ")), None)
    if out.returncode or line is None:
        sys.exit(f"gpu_check: the probe (import torch, transformers, deepspeed; CUDA) failed:\n"
                 f"{(out.stdout + out.stderr)[-3000:]}")
    return json.loads(line[len("PROBE "):])


def fit_layers(base: dict, widths: list[dict], free_bytes: float, fill: float) -> tuple[int, float]:
    """The most layers of ``base``'s width whose largest plan over the configurations fits ``fill`` x free."""
    best = None
    for layers in range(1, base["model_config"]["num_hidden_layers"] + 1):
        cfg = dict(base["model_config"], num_hidden_layers=layers)
        worst = max(plan_estimate({**base, "model_config": cfg, **w})["total"] for w in widths)
        if best is not None and worst * GB > fill * free_bytes:
            break
        best = (layers, worst)  # one layer at least, fitting or not: its OOM is then the result
    return best


def configurations(args, probe: dict) -> tuple[list[dict], dict]:
    device = "cpu" if args.toy else "cuda"
    chunk = args.chunk if args.chunk is not None else (16 if args.toy else None)
    grid = [{"zero": z, "grad_ckpt": g} for z in args.zero for g in args.ckpt]
    models, notes = [], {}
    for name in args.models:
        real = QWEN["qwen2.5-0.5b" if name == "qwen2.5-0.5b" else "qwen2.5-7b"]
        seq = args.seq_len_05b if name == "qwen2.5-0.5b" else args.seq_len_7b
        if args.toy:
            model_config, label, seq = dict(real, **TOY), name + "-toy", max(8, seq // 64)
        else:
            model_config, label = dict(real), name
        base = {"model": label, "model_config": model_config, "seq_len": seq, "batch": args.batch,
                "dtype": args.dtype, "device": device, "chunk": chunk, "steps": args.steps, "kinds": args.kinds}
        if name == "qwen2.5-7b-width" and not args.toy:
            if args.layers:
                layers = args.layers
                notes[label] = f"{layers} layers (--layers)"
            else:
                layers, worst = fit_layers(base, grid, probe["free_bytes"], args.fill)
                notes[label] = (f"{layers} of 28 layers: the plan's largest estimate {worst:.1f} GB <= {args.fill:g} x "
                                f"{probe['free_bytes'] / GB:.1f} GB free")
            base["model_config"] = dict(model_config, num_hidden_layers=layers)
        models.append(base)
    return [{**m, **g} for m in models for g in grid], notes


COLUMNS = (("model", 22), ("layers", 6), ("zero", 4), ("ckpt", 4), ("kind", 4), ("tokens", 7), ("peak GB", 10),
           ("plan GB", 8), ("peak/plan", 9), ("tokens/s", 9), ("step s", 7), ("loss", 7), ("status", 0))


def gb(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def format_row(r: dict) -> str:
    ok = r["status"] == "ok"
    cpu = r["device"] == "cpu"
    peak = "n/a (cpu)" if cpu else gb(r.get("peak_gb"))
    ratio = "n/a" if cpu else (f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-")
    cells = [r["model"], str(r["layers"]), str(r["zero"]), "on" if r["grad_ckpt"] else "off", r["kind"],
             str(r["tokens"]), peak, gb(r.get("plan_gb")), ratio,
             f"{r['tokens_per_s']:.0f}" if ok else "-", f"{r['step_s']:.3f}" if ok else "-",
             f"{r['loss']:.3f}" if ok else "-", r["status"] + (f" ({r['note']})" if r.get("note") else "")]
    return " ".join(c.rjust(w) if i and w else c.ljust(w) for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS)))


def header() -> str:
    return " ".join(n.rjust(w) if i and w else n.ljust(w) for i, (n, w) in enumerate(COLUMNS))


def placeholder(c: dict, kind: str, status: str, note: str = "") -> dict:
    est = plan_estimate(c)
    return {"model": c["model"], "layers": c["model_config"]["num_hidden_layers"], "zero": c["zero"],
            "grad_ckpt": c["grad_ckpt"], "kind": kind, "tokens": c["batch"] * c["seq_len"], "seq_len": c["seq_len"],
            "batch": c["batch"], "dtype": c["dtype"], "device": c["device"], "params": est["params"],
            "plan_gb": est["step"], "plan_total_gb": est["total"], "plan_items": est["items"], "peak_gb": None,
            "ratio": None, "status": status, "note": note}


def crash_status(log_tail: str) -> str:
    text = log_tail.lower()
    return "OOM" if ("out of memory" in text or "alloc_failed" in text) else "error"


def run_group(group: list[dict], env: dict, timeout: float, log) -> tuple[list[dict], dict, str]:
    """One child process over ``group``'s configurations: (rows, child meta, log tail)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec, result = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec.write_text(json.dumps(group))
        child_log = Path(tmp) / "child.log"
        with open(child_log, "w") as fh:
            proc = subprocess.Popen([sys.executable, __file__, "--child", str(spec), "--result", str(result)],
                                    env={**env, "MASTER_PORT": str(free_port())}, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=max(timeout, 1.0))
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        text = child_log.read_text(errors="replace")
        log.write(f"===== {', '.join(sorted({c['model'] for c in group}))}: "
                  f"{[(c['zero'], c['grad_ckpt']) for c in group]} (exit {proc.returncode})\n{text}\n")
        log.flush()
        data = json.loads(result.read_text()) if result.exists() else {"rows": [], "meta": {}}
    tail = "\n".join(text.splitlines()[-15:])
    rows, done = [], {(r["model"], r["zero"], r["grad_ckpt"], r["kind"]): r for r in data["rows"]}
    for c in group:
        for kind in c["kinds"]:
            r = done.get((c["model"], c["zero"], c["grad_ckpt"], kind))
            if r is None:
                status = "timeout" if timed_out else crash_status(tail)
                r = placeholder(c, kind, status, f"child exit {proc.returncode}" if not timed_out else
                                f"child killed after {timeout:.0f} s")
            rows.append(r)
    return rows, data.get("meta", {}), ("" if proc.returncode == 0 and not timed_out else tail)


def write_json(path: Path, data: dict) -> None:
    """Whole or not at all: a reader never sees half a file (a child can be killed while writing)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(rows: list[dict], elapsed: float, forbidden: list[str]) -> tuple[list[str], dict]:
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "OOM", "error", "timeout", "skipped")}
    ok = [r for r in rows if r["status"] == "ok"]
    ratios = [r["ratio"] for r in ok if r.get("ratio") is not None]
    out = {"rows": len(rows), **counts, "elapsed_s": elapsed, "forbidden_imports": forbidden}
    lines = [f"{len(rows)} rows: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"; {elapsed:.0f} s"]
    if ratios:
        out.update(ratio_min=min(ratios), ratio_median=statistics.median(ratios), ratio_max=max(ratios))
        worst = max(ok, key=lambda r: r["ratio"] or 0)
        lines.append(f"peak/plan: min {min(ratios):.2f}, median {statistics.median(ratios):.2f}, max {max(ratios):.2f} "
                     f"({worst['model']} ZeRO-{worst['zero']} ckpt {'on' if worst['grad_ckpt'] else 'off'} "
                     f"{worst['kind']}); above 1: the plan underestimates")
    elif ok:
        lines.append("peak/plan: n/a (cpu: no CUDA memory figures)")
    for model in dict.fromkeys(r["model"] for r in ok):
        best = max((r for r in ok if r["model"] == model), key=lambda r: r["tokens_per_s"])
        lines.append(f"{model}: fastest {best['tokens_per_s']:.0f} tokens/s (ZeRO-{best['zero']}, ckpt "
                     f"{'on' if best['grad_ckpt'] else 'off'}, {best['kind']})")
    lines.append("ray/vllm imported: " + (", ".join(forbidden) if forbidden else "no"))
    return lines, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="CPU (gloo) at toy size: hidden 64, 2 layers, vocab 512, "
                    "sequences of seq-len/64 tokens; no CUDA memory figures")
    ap.add_argument("--out", default="gpu_check.json", help="rows as JSON (the children's logs: OUT.log)")
    ap.add_argument("--budget-s", type=float, default=480.0, help="whole-run time budget; what is left when it "
                    "runs out is skipped with a message (default 8 min)")
    ap.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-7b-width")
    ap.add_argument("--layers", type=int, default=0, help="layers of the 7B-width model (default: as many as the "
                    "plan says fit --fill of free GPU memory)")
    ap.add_argument("--fill", type=float, default=0.5, help="fraction of free GPU memory the 7B-width plan may take "
                    "(the plan is what is under test: the margin leaves room for it to be 2x low)")
    ap.add_argument("--seq-len-05b", type=int, default=4096, help="tokens per sequence, 0.5B shape")
    ap.add_argument("--seq-len-7b", type=int, default=2048, help="tokens per sequence, 7B width")
    ap.add_argument("--batch", type=int, default=1, help="sequences per step (one micro-batch)")
    ap.add_argument("--zero", default="2,3")
    ap.add_argument("--ckpt", default="off,on", help="gradient checkpointing settings to run")
    ap.add_argument("--kinds", default="sft,grpo")
    ap.add_argument("--steps", type=int, default=0, help="measured steps per kind after one warm-up step "
                    "(default 2 on GPU, 1 with --toy)")
    ap.add_argument("--chunk", type=int, default=None, help="learner.logprob_chunk_tokens (default: the config's; "
                    "16 with --toy)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--isolate", choices=["config", "model"], default=None, help="one process per configuration "
                    "(default on GPU) or per model (default with --toy: fewer imports)")
    # tests: MODEL:ZERO:on|off:KIND[:exit] makes that step raise torch.OutOfMemoryError (":exit": the process
    # dies after printing a CUDA OOM message), to check that the other configurations go on
    ap.add_argument("--fake-oom", action="append", default=[], help=argparse.SUPPRESS)
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        return probe_main()
    if args.child:
        return child_main(args.child, args.result)

    start = time.monotonic()
    check_requirements()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(args.models) - {"qwen2.5-0.5b", "qwen2.5-7b-width"}
    if unknown:
        ap.error(f"--models: unknown {sorted(unknown)} (qwen2.5-0.5b, qwen2.5-7b-width)")
    args.zero = [int(z) for z in args.zero.split(",")]
    args.ckpt = [{"on": True, "off": False}[c.strip()] for c in args.ckpt.split(",")]
    args.kinds = [k.strip() for k in args.kinds.split(",")]
    args.steps = args.steps or (1 if args.toy else 2)
    isolate = args.isolate or ("model" if args.toy else "config")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
           "DS_ACCELERATOR": "cpu" if args.toy else "cuda", "DS_BUILD_OPS": "0", "PYTHONUNBUFFERED": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    probe = {"device": "cpu"}
    if not args.toy:
        probe = run_probe(env)
        if not probe["cuda"]:
            sys.exit("gpu_check: no CUDA device here; --toy runs the same path on the CPU at toy size")
        if args.dtype == "bfloat16" and not probe["bf16"]:
            sys.exit(f"gpu_check: {probe['name']} cannot do bfloat16; --dtype float32")
    configs, notes = configurations(args, probe)
    for spec in args.fake_oom:
        model, zero, ckpt, kind, *mode = spec.split(":")
        for c in configs:
            if (c["model"], c["zero"], c["grad_ckpt"]) == (model, int(zero), ckpt == "on"):
                c.setdefault("fake_oom", {})[kind] = mode[0] if mode else "raise"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_name(out.name + ".log")
    if probe.get("cuda"):
        print(f"device: {probe['name']}, {probe['total_bytes'] / GB:.1f} GB, {probe['free_bytes'] / GB:.1f} GB free; "
              f"torch {probe['torch']}, transformers {probe['transformers']}, deepspeed {probe['deepspeed']}")
    else:
        print("device: cpu (--toy: gloo, toy sizes; no CUDA memory figures)")
    for label, note in notes.items():
        print(f"{label}: {note}")
    print(f"{len(configs)} configurations x {len(args.kinds)} step kinds, {args.dtype}, one process per {isolate}, "
          f"budget {args.budget_s:.0f} s, log {log_path}\n")
    print(header(), flush=True)

    groups: list[list[dict]] = []
    for c in configs:
        if isolate == "model" and groups and groups[-1][0]["model"] == c["model"]:
            groups[-1].append(c)
        else:
            groups.append([c])
    rows, metas, skipped_msg = [], [], False
    deadline = start + args.budget_s
    min_child_s = 5.0 if args.toy else 30.0
    doc = {"args": {k: v for k, v in vars(args).items() if k not in ("probe", "child", "result")},
           "device": probe, "notes": notes, "rows": rows}
    with open(log_path, "w") as log:
        for group in groups:
            remaining = deadline - time.monotonic()
            if remaining < min_child_s:
                if not skipped_msg:
                    print(f"time budget of {args.budget_s:.0f} s exhausted: skipping the remaining configurations",
                          flush=True)
                    skipped_msg = True
                new = [placeholder(c, k, "skipped", "time budget") for c in group for k in c["kinds"]]
                tail = ""
            else:
                new, meta, tail = run_group(group, env, remaining, log)
                metas.append(meta)
            for r in new:
                print(format_row(r), flush=True)
            if tail:
                print("  last lines of its log:\n    " + tail.replace("\n", "\n    "), flush=True)
            rows.extend(new)
            write_json(out, doc)
    forbidden = sorted({m for meta in metas for m in meta.get("forbidden_imports", [])} |
                       {m for m in FORBIDDEN if m in sys.modules})
    lines, summ = summary(rows, time.monotonic() - start, forbidden)
    doc.update(summary=summ, versions=next((m["versions"] for m in metas if m.get("versions")), {}),
               third_party_modules=sorted({m for meta in metas for m in meta.get("third_party_modules", [])}),
               forbidden_imports=forbidden)
    write_json(out, doc)
    print("\n" + "\n".join(lines))
    print(f"rows: {out}")
    return 1 if forbidden or summ["error"] else 0


# ---------------------------------------------------------------------------------------------- children
def _versions() -> dict:
    import deepspeed
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "deepspeed": deepspeed.__version__,
            "python": sys.version.split()[0]}


def probe_main() -> int:
    import torch

    info = {"cuda": torch.cuda.is_available(), **_versions()}
    if info["cuda"]:
        free, total = torch.cuda.mem_get_info()
        info.update(name=torch.cuda.get_device_name(0), free_bytes=free, total_bytes=total,
                    bf16=torch.cuda.is_bf16_supported(), capability=list(torch.cuda.get_device_capability(0)))
    print("PROBE " + json.dumps(info), flush=True)
    return 0


def _is_oom(err: BaseException) -> bool:
    import torch

    text = str(err).lower()
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in text or "alloc_failed" in text


class Step:
    """One configuration's DeepSpeed engine and data; ``run(kind)`` is one optimizer step."""

    def __init__(self, c: dict):
        import deepspeed
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        from toolmaster.learner.actor import deepspeed_config
        from toolmaster.learner.losses import TokenLogprobs

        self.c, self.cuda = c, c["device"] == "cuda"
        self.device = torch.device("cuda", 0) if self.cuda else torch.device("cpu")
        self.lc = learner_config(c).learner
        torch.manual_seed(0)
        config = Qwen2Config(**c["model_config"], attn_implementation="sdpa", use_cache=False)
        with torch.device(self.device):  # random init where the model will live (fast for 7B width on a GPU)
            model = Qwen2ForCausalLM(config).float()  # fp32 as the learner loads it; DeepSpeed casts to bf16
        if c["grad_ckpt"]:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=self.lc.lr,
                                      weight_decay=self.lc.weight_decay)
        ds = deepspeed_config({**self.lc.model_dump(), "backend": "nccl" if self.cuda else "gloo"})
        self.engine, *_ = deepspeed.initialize(model=TokenLogprobs(model), optimizer=optimizer, config=ds)
        self.param_dtype = str(next(self.engine.module.parameters()).dtype).replace("torch.", "")
        b, t, vocab = c["batch"], c["seq_len"], c["model_config"]["vocab_size"]
        gen = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, vocab, (b, t), generator=gen).to(self.device)
        self.mask = torch.zeros(b, t - 1)
        self.mask[:, t // 4 - 1:] = 1.0  # a prompt of t/4 tokens, the rest sampled (trained) tokens
        self.mask = self.mask.to(self.device)
        self.total = float(self.mask.sum())
        self.advantages = torch.randn(b, generator=gen).to(self.device)
        self.weights = torch.full((b,), 1.0 / self.total, device=self.device)  # token mean over the batch

    def run(self, kind: str, warmup: bool = False) -> dict:
        import torch

        from toolmaster.learner.losses import grpo_loss, logprob_chunks, sft_loss

        chunk = self.lc.logprob_chunk_tokens
        calls = logprob_chunks(self.ids.numel() - self.ids.shape[0], chunk)
        if self.cuda:
            torch.cuda.synchronize()
            static = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        begin = time.perf_counter()
        self.engine.train()
        logp = self.engine(input_ids=self.ids, chunk_tokens=chunk, min_chunks=calls)
        fake = None if warmup else self.c.get("fake_oom", {}).get(kind)
        if fake == "exit":
            print("torch.OutOfMemoryError: CUDA out of memory (--fake-oom)", flush=True)
            os._exit(1)
        if fake:
            raise torch.OutOfMemoryError("CUDA out of memory (--fake-oom)")
        stats = {}
        if kind == "sft":
            loss = sft_loss(logp, self.mask, self.total)
        else:
            # the sampler's logprobs: the policy's own plus noise, so that ratios move off 1 and clipping acts
            old = logp.detach() + 0.2 * torch.randn_like(logp)
            loss, stats = grpo_loss(logp, old, self.advantages, self.mask, self.weights, self.lc.eps_low,
                                    self.lc.eps_high, clip_ratio_c=self.lc.clip_ratio_c)
        self.engine.backward(loss)
        self.engine.step()
        value = loss.item()
        if self.cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - begin
        grad_norm = self.engine.get_global_grad_norm()
        out = {"seconds": seconds, "loss": value, "stats": stats,
               "grad_norm": float(grad_norm) if grad_norm is not None else None}
        if self.cuda:
            out.update(peak=torch.cuda.max_memory_allocated(), static=static)
        return out

    def close(self) -> None:
        self.engine.destroy()
        self.engine = None


def run_config(c: dict) -> list[dict]:
    import gc

    import torch

    rows = {k: placeholder(c, k, "skipped", "not run") for k in c["kinds"]}
    step = None
    phase = "build"
    try:
        begin = time.perf_counter()
        step = Step(c)
        build_s = time.perf_counter() - begin
        phase = "warm-up"
        warm = step.run("sft", warmup=True)  # allocates the optimizer states; not reported
        for kind in c["kinds"]:
            phase = kind
            runs = [step.run(kind) for _ in range(c["steps"])]
            seconds = statistics.median(r["seconds"] for r in runs)
            r = rows[kind]
            r.update(status="ok", note="", step_s=seconds, tokens_per_s=r["tokens"] / seconds, loss=runs[-1]["loss"],
                     grad_norm=runs[-1]["grad_norm"], stats=runs[-1]["stats"], build_s=build_s,
                     warmup_s=warm["seconds"], param_dtype=step.param_dtype, chunk=step.lc.logprob_chunk_tokens)
            if step.cuda:
                peak = max(x["peak"] for x in runs) / GB
                r.update(peak_gb=peak, static_gb=runs[-1]["static"] / GB, warmup_peak_gb=warm["peak"] / GB,
                         ratio=peak / r["plan_gb"])
            if not math.isfinite(r["loss"]):
                r.update(status="error", note="loss not finite")
    except Exception as err:  # an OOM (or any failure) is this configuration's result; the rest go on
        oom = _is_oom(err)
        status, note = ("OOM", f"in {phase}") if oom else ("error", f"{phase}: {type(err).__name__}: {err}"[:300])
        if not oom:
            import traceback

            traceback.print_exc()
        hit = False
        for kind, r in rows.items():
            if r.get("step_s") is not None:
                continue
            if phase in ("build", "warm-up") or kind == phase:
                r.update(status=status, note=note)
                hit = True
            elif hit:
                r.update(status="skipped", note=f"after {status} in {phase}")
    finally:
        if step is not None and step.engine is not None:
            try:
                step.close()
            except Exception:  # a failed engine may not tear down cleanly; the process ends soon anyway
                pass
        step = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return list(rows.values())


def child_main(spec_path: str, result_path: str) -> int:
    import deepspeed
    import torch

    group = json.loads(Path(spec_path).read_text())
    cuda = group[0]["device"] == "cuda"
    if cuda:
        torch.cuda.set_device(0)
    else:
        # DeepSpeed's CPU accelerator JIT-compiles a shared-memory all-reduce for its process group; one rank
        # has nothing to share, and this check builds no DeepSpeed op
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    rows: list[dict] = []
    meta = {"versions": _versions()}
    result = Path(result_path)
    for c in group:
        rows.extend(run_config(c))
        write_json(result, {"rows": rows, "meta": meta})
    meta["forbidden_imports"] = [m for m in FORBIDDEN if m in sys.modules]
    meta["third_party_modules"] = sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names)
                                         - {"__main__", "__mp_main__", "toolmaster", "benchmarks"})
    write_json(result, {"rows": rows, "meta": meta})
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
