"""Learner memory is set by the micro-batch budget, not by the batch: real DeepSpeed ranks on Ray, one SFT
step each for 16, 64 and 256 sequences of ``--seq-len`` tokens, peak RSS per rank and tokens/s side by side;
the same model and data through a plain single-process PyTorch loop (ratio); and the memory plan's learner
estimate (toolmaster/plan.py) against the measured peak.

    .venv/bin/python benchmarks/learner_memory.py                      # ≈ 32 M parameters (slow on 2 cores)
    .venv/bin/python benchmarks/learner_memory.py --hidden 256 --layers 4 --vocab 8000   # ≈ 5 M, ~10 min

Peak RSS per rank is measured from the resident size just before the model was loaded (libraries excluded),
with glibc told to return large blocks when freed (MALLOC_MMAP_THRESHOLD_), so it is the peak of live memory.
"""
import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from toolmaster.models.tiny import TINY_SETTINGS as TINY

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"  # inherited by the Ray workers this process starts
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_model(out: Path, hidden: int, layers: int, vocab: int, seq_len: int) -> dict:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
                         num_attention_heads=max(hidden // 64, 2), num_key_value_heads=max(hidden // 256, 1),
                         max_position_embeddings=max(2048, seq_len), tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(out)
    return json.loads((out / "config.json").read_text())


def batch(n: int, seq_len: int, vocab: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    ids = [[rng.randrange(vocab) for _ in range(seq_len)] for _ in range(n)]
    mask = [[0] * 16 + [1] * (seq_len - 16) for _ in range(n)]
    return {"token_ids": ids, "loss_mask": mask, "total_tokens": sum(map(sum, mask)), "lr": 1e-4}


def learner_step(model_dir: str, data: dict, overrides: list[str]) -> tuple[float, list[dict]]:
    from toolmaster.config import build_config
    from toolmaster.learner.group import LearnerGroup

    group = LearnerGroup(build_config(TINY, overrides), model_dir)
    try:
        warm = {k: v[:2] if isinstance(v, list) else v for k, v in data.items()}
        warm["total_tokens"] = sum(map(sum, warm["loss_mask"]))
        group.train_step(warm, "sft")  # the first step also allocates Adam's states
        start = time.perf_counter()
        group.train_step(data, "sft")
        return time.perf_counter() - start, group.memory()
    finally:
        group.shutdown()


def plain_step(model_dir: str, data: dict, budget: int, threads: int) -> float:
    """The second of two AdamW steps of the same model in this process, micro-batched with the same budget."""
    import torch
    from transformers import AutoModelForCausalLM

    from toolmaster.learner.losses import token_logprobs
    from toolmaster.learner.microbatch import plan_microbatches

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    def step() -> float:
        start = time.perf_counter()
        for rows in plan_microbatches([len(s) for s in data["token_ids"]], budget):
            ids = torch.tensor([data["token_ids"][i] for i in rows])
            mask = torch.tensor([data["loss_mask"][i] for i in rows])[:, 1:].float()
            (-(token_logprobs(model, ids, 1024) * mask).sum() / data["total_tokens"]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - start

    step()  # allocates Adam's states, as the learner's warm-up step does
    return step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--sizes", default="16,64,256", help="sequences per step")
    ap.add_argument("--budget", type=int, default=4096, help="learner.max_tokens_per_microbatch")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--out", default="runs/bench_learner_memory")
    args = ap.parse_args()

    import ray

    from toolmaster.config import build_config
    from toolmaster.plan import ModelShape, learner_plan

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = build_model(out / "model", args.hidden, args.layers, args.vocab, args.seq_len)
    shape = ModelShape.from_config(config)
    overrides = [f"learner.num_ranks={args.ranks}", f"learner.max_tokens_per_microbatch={args.budget}",
                 "learner.logprob_chunk_tokens=1024", "learner.num_cpus_per_rank=1"]
    planned = learner_plan(build_config(TINY, overrides), shape, args.seq_len)["total"] * 1e9 / 2**20
    ray.init(num_cpus=max(args.ranks, 2), include_dashboard=False, log_to_driver=False)
    rows = []
    for n in map(int, args.sizes.split(",")):
        data = batch(n, args.seq_len, args.vocab)
        seconds, memory = learner_step(str(out / "model"), data, overrides)
        peaks = [m["peak_rss_mb"] - m["start_rss_mb"] for m in memory]
        rows.append({"sequences": n, "tokens": n * args.seq_len, "seconds": seconds, "peak_mb": peaks,
                     "tokens_per_s": n * args.seq_len / seconds})
        print(f"{n:>4} sequences: peak RSS per rank {', '.join(f'{p:.0f}' for p in peaks)} MB, "
              f"{rows[-1]['tokens_per_s']:.0f} tokens/s", flush=True)
    ray.shutdown()
    mid = rows[len(rows) // 2]
    data = batch(mid["sequences"], args.seq_len, args.vocab)
    plain = mid["tokens"] / plain_step(str(out / "model"), data, args.budget, threads=args.ranks)

    print(f"\nmodel: {shape.params / 1e6:.1f} M parameters, {args.seq_len}-token sequences, {args.ranks} ranks "
          f"(ZeRO-2, fp32), micro-batch budget {args.budget} tokens")
    print(f"{'sequences':>10} {'peak MB/rank':>13} {'× first':>8} {'tokens/s':>9}")
    first = max(rows[0]["peak_mb"])
    for r in rows:
        print(f"{r['sequences']:>10} {max(r['peak_mb']):>13.0f} {max(r['peak_mb']) / first:>8.2f} "
              f"{r['tokens_per_s']:>9.0f}")
    print(f"plain PyTorch loop, 1 process × {args.ranks} threads, {mid['sequences']} sequences: {plain:.0f} tokens/s; "
          f"learner / plain = {mid['tokens_per_s'] / plain:.2f}")
    print(f"memory plan (toolmaster plan) learner estimate {planned:.0f} MB per rank; measured peak "
          f"{max(rows[-1]['peak_mb']):.0f} MB; measured / plan = {max(rows[-1]['peak_mb']) / planned:.2f}")
    (out / "result.json").write_text(json.dumps({"rows": rows, "plain_tokens_per_s": plain, "plan_mb": planned,
                                                 "params": shape.params, "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
