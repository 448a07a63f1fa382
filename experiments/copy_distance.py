"""How far back can a model copy? The copy loss (nats per copied token) on windows of protocol text repeated
after a gap of other protocol text, ``x GAP SEP x``, at several gap lengths: the copy pre-training's own
task (toolmaster/models/pretrain.py), measured on fresh windows.

    .venv/bin/python experiments/copy_distance.py MODEL [MODEL ...] [--gaps 0 50 150 300 600] [--span 12]

Near 0 is a model that copies from that far; near or above ln(vocabulary) (≈ 6.6) is one that cannot.
"""
import argparse
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def far_copy_batch(rng: random.Random, texts: list[list[int]], sep: int, span: int, gap: int, rows: int):
    """A fixed gap (the pre-training batches draw theirs at random)."""
    import torch

    from toolmaster.models.pretrain import text_window

    ids, masks = [], []
    for _ in range(rows):
        x = text_window(rng, texts, span)
        filler = text_window(rng, texts, gap) if gap else []
        ids.append(x + filler + [sep] + x)
        masks.append([0] * (span + gap + 1) + [1] * span)
    return torch.tensor(ids), torch.tensor(masks)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--config", default="configs/quickstart.yaml", help="the toolworld whose protocol text is copied")
    ap.add_argument("--gaps", type=int, nargs="+", default=[0, 50, 150, 300, 600])
    ap.add_argument("--span", type=int, default=12)
    ap.add_argument("--batches", type=int, default=4)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from toolmaster.config import load_config
    from toolmaster.models.pretrain import copy_loss
    from toolmaster.models.tiny import protocol_corpus

    torch.set_num_threads(os.cpu_count() or 1)
    corpus = protocol_corpus(load_config(args.config))
    print(f"copy loss (nats per copied token) of {args.span}-token protocol windows, by gap in tokens")
    print(f"{'model':<48}" + "".join(f"{g:>8}" for g in args.gaps))
    for path in args.models:
        tok = AutoTokenizer.from_pretrained(path)
        texts = [tok(t, add_special_tokens=False)["input_ids"] for t in corpus]
        sep = tok.convert_tokens_to_ids("<|endoftext|>")
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        row = []
        for gap in args.gaps:
            rng = random.Random(5)  # the same windows for every model
            with torch.no_grad():
                losses = [copy_loss(model, *far_copy_batch(rng, texts, sep, args.span, gap, 8)).item()
                          for _ in range(args.batches)]
            row.append(sum(losses) / len(losses))
        print(f"{path:<48}" + "".join(f"{v:>8.2f}" for v in row))


if __name__ == "__main__":
    main()
