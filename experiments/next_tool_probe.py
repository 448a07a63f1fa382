"""How sure is a model of the next hop's tool? On two-hop teacher trajectories (the SFT data), the probability
the model gives each digit of the second tool's name right after the first hop's result, by the first
tool's hidden rule; and the same after the first tool's failed plain call and its error are repeated twice
more (a longer, otherwise identical context: does the choice survive distance?).

    .venv/bin/python experiments/next_tool_probe.py --model runs/sft/checkpoints/latest --data runs/data [--examples 40]

A digit probability near 1 is a choice the policy makes; near 0.1 (one in ten digits) is a guess, which a
GRPO group of 8 almost never turns into a success (see `toolmaster eval --reach 8`).
"""
import argparse
import json
import os
import statistics

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def digit_probs(model, tok, messages: list[dict], tools: list[dict], result_at: int) -> list[float]:
    """p(each digit of the tool name the teacher wrote next) after messages[:result_at + 1]."""
    import torch

    from toolmaster.protocol.chat_format import render_text

    prefix = render_text(messages[: result_at + 1], tools, add_generation_prompt=True)
    reply = messages[result_at + 1]["content"]
    cut = reply.index('"name": "get_r') + len('"name": "get_r')
    head = tok(prefix + reply[:cut])["input_ids"]
    full = tok(prefix + reply[: cut + 3])["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), -1)
    return [float(logp[j - 1, full[j]].exp()) for j in range(len(head), len(full))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="a `toolmaster synth` dataset directory (toolworld, trials on)")
    ap.add_argument("--examples", type=int, default=40, help="two-hop examples per first-tool rule at most")
    args = ap.parse_args()

    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    rows: dict[str, list[list[float]]] = {}
    for row in load_from_disk(args.data):
        messages = row["messages"]
        if messages[1]["content"].count(" of ") != 2:  # two-hop questions name two relations
            continue
        tools = json.loads(row["tools"]) if isinstance(row["tools"], str) else row["tools"]
        result_at = next(i for i, m in enumerate(messages) if m["role"] == "tool" and m["content"].startswith("{"))
        before = "".join(m["content"] for m in messages[:result_at])
        rule = "enum" if "supported:" in before else "prefix/suffix" if "expected the form" in before else "none"
        if len(rows.setdefault(rule, [])) >= args.examples:
            continue
        rows[rule].append(digit_probs(model, tok, messages, tools, result_at))
        if rule == "prefix/suffix":  # repeat the failed plain call and its error twice: longer, same content
            err = next(i for i, m in enumerate(messages) if m["role"] == "tool" and "expected the form" in m["content"])
            longer = messages[: err + 1] + messages[err - 1: err + 1] * 2 + messages[err + 1:]
            rows.setdefault("prefix/suffix, 2 failed calls repeated", []).append(
                digit_probs(model, tok, longer, tools, result_at + 4))
    print(f"{args.model}: p(digit k of the second tool's name) on two-hop SFT examples, by the first tool's rule")
    print(f"{'first tool':<42}{'examples':>9}{'digit 1':>9}{'digit 2':>9}{'digit 3':>9}")
    for rule, probs in rows.items():
        means = [statistics.mean(p[k] for p in probs) for k in range(3)]
        print(f"{rule:<42}{len(probs):>9}" + "".join(f"{m:>9.3f}" for m in means))


if __name__ == "__main__":
    main()
