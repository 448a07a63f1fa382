"""Rollout time through the agent endpoint vs our native agent loop, in one run, on the same toolworld tasks
and model (a ratio; these machines are noisy, so compare within one run).

The endpoint side is an agent written with the ``openai`` SDK (``sdk_toolworld_agent`` below): the same
system prompt, the task's tools as ``tools=``, ``tool_calls`` run by the agent through the native loop's
tool runner and turn rules, so that the model reads the same observations. Both sides run the same
episodes (B tasks × G, the same episode ids and seeds) on the same fleet size; the script prints how many
episodes came out identical (same sampled tokens), so the ratio is the endpoint's own cost.

    .venv/bin/python benchmarks/agent_endpoint.py --model runs/quickstart/sft/checkpoints/latest [--tasks 8 --group 4]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from toolmaster.models.tiny import TINY_SETTINGS as TINY

ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")

_shared = {}


async def sdk_toolworld_agent(task: dict, client, model: str) -> dict:
    """A toolworld episode through the OpenAI SDK, with the native loop's turn semantics on the client side
    (the same tool runner, the same observation for an unreadable or empty turn): the model reads the same
    observations as in the native loop, so with the per-episode seeds both sides sample the same episodes
    and the ratio is the endpoint's own cost."""
    from toolmaster.agent.episode import Episode
    from toolmaster.agent.loop import take_turn
    from toolmaster.config import build_config
    from toolmaster.envs import make_env
    from toolmaster.protocol import EpisodeStats
    from toolmaster.tools.base import ToolRunner

    if not _shared:
        cfg = build_config(TINY, [])
        _shared["runner"] = ToolRunner.from_config(cfg.sandbox)
        _shared["tasks"] = {t.id: t for t in make_env(cfg.env).tasks("test", task["num_tasks"])}
    runner, native = _shared["runner"], _shared["tasks"][task["task_id"]]
    shadow = Episode(episode_id="shadow", task_id=native.id, messages=[], tools=native.schemas)
    tracker = EpisodeStats()
    messages = [{"role": "system", "content": task["system"]}, {"role": "user", "content": task["question"]}]
    for _ in range(task["max_turns"]):
        tools = [{"type": "function", "function": s} for s in native.schemas]
        reply = await client.chat.completions.create(model=model, messages=messages, tools=tools)
        message = reply.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        text = (message.content or "") + "".join(
            "<tool_call>" + json.dumps({"name": c.function.name, "arguments": json.loads(c.function.arguments)})
            + "</tool_call>" for c in message.tool_calls or [])
        before = len(shadow.messages)
        await take_turn(shadow, native, text, runner, tracker)
        if shadow.done:
            break
        observations = [m["content"] for m in shadow.messages[before + 1:]]
        ids = [c.id for c in message.tool_calls or []]
        messages += [{"role": "tool", "tool_call_id": ids[i] if i < len(ids) else f"obs-{i}", "content": content}
                     for i, content in enumerate(observations)]
    correct = (shadow.answer or "").strip().lower() == task["reference"].strip().lower()
    return {"reward": float(correct), "correct": correct}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--show", action="store_true", help="print the first episode's last request of each mode")
    args = ap.parse_args()

    import ray

    from toolmaster.config import build_config
    from toolmaster.envs import make_env
    from toolmaster.protocol import build_messages
    from toolmaster.rollout.pool import RolloutPool

    common = [f"rollout.num_workers={args.workers}", "env.max_turns=9"]
    native_cfg = build_config(TINY, common)
    tasks = make_env(native_cfg.env).tasks("test", args.tasks)
    rows = [{"task_id": t.id, "num_tasks": args.tasks, "question": t.question, "reference": t.reference,
             "max_turns": 9, "system": build_messages(t.question, True)[0]["content"]} for t in tasks]
    path = Path(tempfile.mkdtemp()) / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    agent_cfg = build_config(TINY, [*common, "env.name=agent",
                                  "env.agent.entry=benchmarks.agent_endpoint:sdk_toolworld_agent",
                                  f"env.agent.tasks={path}", "env.agent.test_fraction=0"])
    ray.init(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": ROOT}})
    results = {}
    for name, cfg, run_tasks in (("native loop", native_cfg, tasks),
                                 ("OpenAI-SDK agent via endpoint", agent_cfg, make_env(agent_cfg.env).tasks("train"))):
        pool = RolloutPool(cfg, args.model)
        try:
            pool.run(run_tasks[:1], 1, step=-1)  # warm-up: engine, sandbox and endpoint started
            start = time.perf_counter()
            records = pool.run(run_tasks, args.group, step=0)
            seconds = time.perf_counter() - start
        finally:
            pool.shutdown()
        if args.show:
            print(f"--- {name}: {records[0].episode_id}")
            for m in records[0].messages[1:]:
                print(f"{m['role']}: {m['content'][:300]!r}")
        results[name] = {"seconds": seconds, "episodes": len(records),
                         "success": sum(r.correct for r in records) / len(records),
                         "turns": sum(r.stats["turns"] for r in records) / len(records),
                         "sampled_tokens": sum(sum(r.loss_mask) for r in records) / len(records),
                         "sampled": {r.episode_id: [t for t, m in zip(r.token_ids, r.loss_mask) if m]
                                     for r in records}}
    ray.shutdown()
    print(f"{'rollouts':32s} {'seconds':>8s} {'episodes':>9s} {'success':>8s} {'turns':>6s} {'sampled tok/ep':>15s}")
    for name, r in results.items():
        print(f"{name:32s} {r['seconds']:8.1f} {r['episodes']:9d} {r['success']:8.2f} {r['turns']:6.2f} "
              f"{r['sampled_tokens']:15.1f}")
    native, agent = results["native loop"], results["OpenAI-SDK agent via endpoint"]
    same = sum(native["sampled"][k] == agent["sampled"].get(k) for k in native["sampled"])
    print(f"episodes with identical sampled tokens on both sides: {same} / {len(native['sampled'])}")
    per_token = ((agent["seconds"] / max(agent["sampled_tokens"], 1))
                 / (native["seconds"] / max(native["sampled_tokens"], 1)))
    print(f"endpoint / native wall time = {agent['seconds'] / native['seconds']:.2f}; "
          f"per sampled token = {per_token:.2f}")


if __name__ == "__main__":
    main()
