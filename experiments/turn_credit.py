"""Which moves did a GRPO run push up, and which down? Reads the episodes a run saved with
``grpo.save_rollouts=true`` (``rollouts/step-N.jsonl``) and sums, per kind of assistant turn, the advantage
that the trained turns carried, split by whether the episode succeeded.

    .venv/bin/python experiments/turn_credit.py RUN_DIR
    # e.g. RUN_DIR = G/grpo after experiments/grpo_gain.py --out G ... grpo.save_rollouts=true

Turn kinds (toolworld's protocol): ``trial`` — a call before the first experience note; after it,
``execution ok`` / ``execution failed`` — a call whose observation is a result / an error, unless it follows
a failed execution call, then ``after a failure: fixed`` (its call succeeded), ``... repeated`` (the same
call again) or ``... failed again``; ``answer``; ``malformed`` (neither a call nor an answer). Under
``token_mean`` a turn's push is its advantage times its tokens; the sums here count turns, which is enough
to see the sign and the balance of each kind.
"""
import argparse
import glob
import json
import re
from collections import defaultdict
from pathlib import Path

KINDS = ("trial", "execution ok", "execution failed", "after a failure: fixed", "after a failure: repeated",
         "after a failure: failed again", "answer", "malformed")


def _call(text: str) -> str | None:
    match = re.search(r"<tool_call>(.*?)</tool_call>", text, re.S)
    return match.group(1).strip() if match else None


def turn_kinds(messages: list[dict]) -> list[str]:
    """The kind of each assistant turn of one episode, in order."""
    kinds, noted, failed_call = [], False, None
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        text = message["content"]
        observation = messages[i + 1]["content"] if i + 1 < len(messages) else ""
        noted = noted or "<experience>" in text
        call, error = _call(text), observation.startswith("error")
        if call is None:
            kinds.append("answer" if "<answer>" in text else "malformed")
            continue
        if not noted:
            kind = "trial"
        elif failed_call is not None:
            kind = ("after a failure: repeated" if call == failed_call else
                    "after a failure: failed again" if error else "after a failure: fixed")
        else:
            kind = "execution failed" if error else "execution ok"
        kinds.append(kind)
        if noted:
            failed_call = call if error else None
    return kinds


def credit(run_dir: str) -> dict:
    """Per kind: trained turns, Σ advantage in successful episodes, Σ advantage in unsuccessful ones."""
    table = defaultdict(lambda: [0, 0.0, 0.0])
    files = sorted(glob.glob(str(Path(run_dir) / "rollouts" / "step-*.jsonl")))
    if not files:
        raise SystemExit(f"{run_dir}/rollouts has no step files: run GRPO with grpo.save_rollouts=true")
    for path in files:
        for line in open(path):
            episode = json.loads(line)
            if episode["advantage"] is None:  # not trained: its group was dropped, or it failed
                continue
            kinds = turn_kinds(episode["messages"])
            for turn in episode["trained_turns"]:
                if turn < len(kinds):
                    row = table[kinds[turn]]
                    row[0] += 1
                    row[1 if episode["correct"] else 2] += episode["advantage"]
    return {kind: table[kind] for kind in KINDS if kind in table}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", help="a GRPO run directory written with grpo.save_rollouts=true")
    args = ap.parse_args()
    print(f"{'turn kind':<32}{'trained turns':>14}{'Σ adv, successes':>18}{'Σ adv, failures':>17}{'net':>9}")
    for kind, (n, pos, neg) in credit(args.run_dir).items():
        print(f"{kind:<32}{n:>14}{pos:>18.1f}{neg:>17.1f}{pos + neg:>+9.1f}")


if __name__ == "__main__":
    main()
