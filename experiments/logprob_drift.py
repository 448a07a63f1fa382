"""Where did GRPO move the policy? On the episodes a model *before* GRPO solved greedily on held-out tasks,
compare its token log-probabilities with those of the model *after*: the mean change on the assistant's
tokens, split into copied tokens (the token and the one before it already occur earlier in the episode:
entity ids, tool names, argument values read off the context) and written ones (everything else), and the
positions where the after-model's greedy choice is no longer the token the before-model wrote ("flips":
where its greedy episode leaves the solved one).

    .venv/bin/python experiments/logprob_drift.py --before SFT_DIR --after GRPO_DIR --episodes EVAL_DIR \
        [--config configs/quickstart.yaml] [--show 12]

EVAL_DIR is the before-model's `toolmaster eval` (or grpo_gain.py's eval_sft) directory: report.json and
episodes.jsonl, in the order of the held-out tasks.
"""
import argparse
import json
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def copied_positions(ids: list[int]) -> list[bool]:
    """Position t is a copy when the bigram (ids[t-1], ids[t]) occurred before t."""
    seen, out = set(), [False] * len(ids)
    for t in range(1, len(ids)):
        out[t] = (ids[t - 1], ids[t]) in seen
        seen.add((ids[t - 1], ids[t]))
    return out


def scored(model, ids: list[int]):
    import torch

    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)
    target = torch.tensor(ids[1:])
    return logp.gather(-1, target[:, None])[:, 0], logp.argmax(-1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--episodes", required=True, help="the before-model's eval directory")
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--show", type=int, default=12, help="flips to print with their context")
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from toolmaster.config import load_config
    from toolmaster.envs import make_env
    from toolmaster.evaluation.report import group_key
    from toolmaster.evaluation.runner import eval_tasks
    from toolmaster.trainer.sft import sft_example

    report = json.loads((Path(args.episodes) / "report.json").read_text())
    episodes = [json.loads(line) for line in (Path(args.episodes) / "episodes.jsonl").open()]
    cfg = load_config(args.config, [f"eval.num_tasks={report['num_items']}", "eval.split=" + report["split"]])
    tasks = {t.id: t for t in eval_tasks(cfg, make_env(cfg.env))}
    key = group_key(list(tasks.values()))
    tok = AutoTokenizer.from_pretrained(args.before)
    before = AutoModelForCausalLM.from_pretrained(args.before).eval()
    after = AutoModelForCausalLM.from_pretrained(args.after).eval()

    sums = {k: [0.0, 0] for k in ("copied", "written")}
    flips, flip_kinds, examples, solved = 0, Counter(), [], 0
    pairs = Counter()  # (wrote, now) over all flips
    by_group = {}  # group → [solved episodes, flips, episodes with a flip]
    for item, ep in zip(report["items"], episodes):
        if not item["correct"]:
            continue
        solved += 1
        task = tasks[item["task_id"]]
        counts = by_group.setdefault(task.metadata.get(key, "-") if key else "-", [0, 0, 0])
        counts[0] += 1
        ids, mask = sft_example(tok, ep["messages"], task.schemas)
        lp_b, top_b = scored(before, ids)
        lp_a, top_a = scored(after, ids)
        copy = copied_positions(ids)
        first = True
        for t in range(1, len(ids)):
            if not mask[t]:
                continue
            kind = "copied" if copy[t] else "written"
            sums[kind][0] += float(lp_a[t - 1] - lp_b[t - 1])
            sums[kind][1] += 1
            # a flip only counts where the before-model chose this token greedily (re-tokenization can differ)
            if int(top_b[t - 1]) == ids[t] and int(top_a[t - 1]) != ids[t]:
                flips += 1
                flip_kinds[kind] += 1
                counts[1] += 1
                counts[2] += first
                pairs[(tok.decode([ids[t]]), tok.decode([int(top_a[t - 1])]))] += 1
                if first and len(examples) < args.show:
                    examples.append((item["task_id"], tok.decode(ids[max(0, t - 12): t]), tok.decode([ids[t]]),
                                     tok.decode([int(top_a[t - 1])]), kind))
                first = False
    print(f"{solved} episodes the before-model solved; assistant tokens: "
          + ", ".join(f"{k} {n}" for k, (_, n) in sums.items()))
    for kind, (total, n) in sums.items():
        print(f"  mean Δ log p on {kind} tokens: {total / max(n, 1):+.4f}")
    print(f"greedy flips: {flips} ({dict(flip_kinds)}), per solved episode {flips / max(solved, 1):.2f}")
    print("  most frequent flips (wrote → now): "
          + ", ".join(f"{w!r} → {n!r} ×{c}" for (w, n), c in pairs.most_common(8)))
    for group, (n, f, eps) in sorted(by_group.items()):
        print(f"  {key}={group}: {n} solved, {f} flips, {eps} episodes with a flip")
    for task_id, context, wrote, now, kind in examples:
        print(f"  {task_id} [{kind}] …{context!r} wrote {wrote!r}, now {now!r}")


if __name__ == "__main__":
    main()
