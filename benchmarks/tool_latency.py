"""Do tool calls stall rollouts? Episodes run through the real rollout path — a RolloutWorker with its vLLM
engine and agent loop, the tiny model SFT'd here to call a tool ``--calls`` times and answer — against a
StableToolBench-compatible tool server (``POST /virtual``) whose every call sleeps ``--latency`` seconds.
Tools go through the worker's own tool runner (the pooled tool-server client), or with ``--env-actors N``
through N ToolEnv actors.

It prints, at each concurrency (``rollout.max_episodes_per_worker``), rollout throughput, and per episode the
measured tool time (every wait from the parsed call to its observation, queueing included) against
calls × latency: a ratio of 1 means no call waited for another.

    .venv/bin/python benchmarks/tool_latency.py [--model DIR] [--latency 0.5] [--calls 2]
        [--levels 8,32,64] [--episodes 128] [--env-actors 0] [key=value ...]

Without ``--model`` it builds the tiny model and SFTs it (a few minutes on 2 CPU cores).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SYSTEM = "You look up records. Call the lookup tool until you have what you need, then answer inside <answer></answer>."
TOOL = {"name": "lookup", "description": "Look up a record by query.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}
CALL = '<tool_call>{"name": "lookup", "arguments": {"query": "status"}}</tool_call>'
RESPONSE = {"error": "", "response": "status: ok"}


def serve(port: int, latency: float, max_concurrency: int) -> None:
    """The project's tool server (toolserver/app.py, its limits and thread pool) with one backend whose every
    answer takes ``latency`` seconds, as a simulated API's would."""
    import threading

    import uvicorn

    from toolmaster.config import ToolServerConfig
    from toolmaster.toolserver import app as app_module
    from toolmaster.toolserver.backends import Backend
    from toolmaster.toolserver.docs import DocRegistry

    class Sleeps(Backend):
        name = "sleeps"

        def __init__(self):
            self.lock, self.in_flight, self.peak = threading.Lock(), 0, 0

        def respond(self, call, doc):
            with self.lock:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            time.sleep(latency)
            with self.lock:
                self.in_flight -= 1
            return dict(RESPONSE)

    backend = Sleeps()
    app_module.make_backends = lambda cfg: [backend]
    app = app_module.create_app(ToolServerConfig(max_concurrency=max_concurrency, docs=[]), DocRegistry())

    @app.post("/peak")
    async def peak() -> dict:  # the most calls answered at once since the last ask, then reset
        seen, backend.peak = backend.peak, backend.in_flight
        return {"peak": seen}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", backlog=4096)


def start_server(latency: float, max_concurrency: int) -> tuple[subprocess.Popen, str]:
    import httpx

    from toolmaster.toolserver.process import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", str(port), str(latency),
                             str(max_concurrency)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url + "/health", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the benchmark's tool server did not start")


def sft_rows(n: int, calls: int) -> list[dict]:
    from toolmaster.protocol import build_messages

    rows = []
    for i in range(n):
        messages = build_messages(f"What is the status of record {i}?", system=SYSTEM)
        for _ in range(calls):
            messages += [{"role": "assistant", "content": CALL},
                         {"role": "tool", "content": json.dumps(RESPONSE, ensure_ascii=False)}]
        messages.append({"role": "assistant", "content": "<answer>ok</answer>"})
        rows.append({"messages": messages, "tools": json.dumps([TOOL])})
    return rows


def build_model(cfg, work: str, calls: int, steps: int) -> str:
    """The tiny model, SFT'd to call ``lookup`` ``calls`` times and answer."""
    import datasets

    from toolmaster.models.tiny import build_tiny_model
    from toolmaster.trainer.sft import train_sft

    start = time.perf_counter()
    base = os.path.join(work, "tiny")
    build_tiny_model(cfg, base, tie_embeddings=False)
    datasets.Dataset.from_list(sft_rows(256, calls)).save_to_disk(os.path.join(work, "data"))
    sft = train_sft(cfg, base, os.path.join(work, "data"))
    print(f"built and SFT'd the tiny model in {time.perf_counter() - start:.0f} s ({steps} steps)", flush=True)
    return sft["checkpoint"]


def tasks(url: str, n: int, start: int) -> list:
    from toolmaster.envs.base import Task
    from toolmaster.tools.spec import Tool, VirtualApiExecutor

    tool = Tool(TOOL, VirtualApiExecutor(url, "Data", "records", "lookup", timeout_s=60.0))
    return [Task(id=f"lookup-{i}", question=f"What is the status of record {i}?", tools=(tool,), reference="ok")
            for i in range(start, start + n)]


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="an SFT'd tiny model; default: build one here")
    ap.add_argument("--latency", type=float, default=0.5, help="seconds each tool call sleeps on the server")
    ap.add_argument("--calls", type=int, default=2, help="tool calls per episode the SFT teaches")
    ap.add_argument("--levels", default="8,32,64", help="concurrent episodes per worker")
    ap.add_argument("--episodes", type=int, default=128, help="episodes per level")
    ap.add_argument("--env-actors", type=int, default=0, help="run tools on N ToolEnv actors (0: in the worker)")
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--server-concurrency", type=int, default=256, help="the tool server's max_concurrency")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    import httpx
    import ray

    from toolmaster.config import build_config
    from toolmaster.models.tiny import TINY_SETTINGS
    from toolmaster.ray_utils import init_ray
    from toolmaster.rollout.pool import RolloutPool

    work = tempfile.mkdtemp(prefix="tool-latency-")
    cfg = build_config(TINY_SETTINGS, [
        "model.copy_pretrain_steps=0", f"run_dir={work}/sft", f"sft.steps={args.sft_steps}", "sft.batch_size=8",
        "env.name=codebook", f"env.max_turns={args.calls + 1}", "rollout.generation.temperature=0.0",
        "rollout.generation.max_new_tokens=32", "rollout.num_workers=1",
        f"rollout.max_episodes_per_worker={max(levels)}",
        f"rollout.engine.max_num_seqs={max(levels)}", f"env_actors.num_actors={args.env_actors}",
        *args.overrides])
    cfg.env.system_prompt = SYSTEM
    server, url = start_server(args.latency, args.server_concurrency)
    try:
        model = args.model or build_model(cfg, work, args.calls, args.sft_steps)
        init_ray()
        pool = RolloutPool(cfg, model)
        rows = {}
        try:
            refs = [ray.put(t) for t in tasks(url, args.episodes, 0)]
            pool.run_specs([(f"warm-{i}", refs[i]) for i in range(min(16, args.episodes))])  # compile, connect
            for level in levels:
                pool.cfg.rollout.max_episodes_per_worker = level  # the pool reads its cap on every dispatch
                httpx.post(url + "/peak")
                start = time.perf_counter()
                records = pool.run_specs([(f"c{level}-{i}", ref) for i, ref in enumerate(refs)])
                wall = time.perf_counter() - start
                rows[level] = (records, wall, httpx.post(url + "/peak").json())
        finally:
            pool.shutdown()
            ray.shutdown()
    finally:
        server.kill()

    where = f"{args.env_actors} ToolEnv actor(s)" if args.env_actors else "the rollout worker's own tool runner"
    print(f"\n{args.episodes} episodes per level, one RolloutWorker (vLLM, tiny SFT'd model), tools through {where} "
          f"to the tool server (toolserver/app.py, max_concurrency {args.server_concurrency}) whose every call "
          f"takes {args.latency:g} s")
    print(f"{'concurrent':>10} {'episodes/s':>10} {'calls/s':>8} {'calls/ep':>8} {'tool s/ep':>9} "
          f"{'calls x lat':>11} {'ratio':>6} {'gen s/ep':>8} {'server peak':>11} {'failed':>6}")
    ratios = {}
    for level, (records, wall, health) in rows.items():
        ok = [r for r in records if r.error is None]
        called = [r for r in ok if r.calls]
        calls = sum(len(r.calls) for r in ok)
        tool_s = statistics.mean(r.timings.get("tools", 0.0) for r in called) if called else 0.0
        ideal = statistics.mean(len(r.calls) * args.latency for r in called) if called else 0.0
        per_ep = [r.timings["tools"] / (len(r.calls) * args.latency) for r in called]
        ratios[level] = (tool_s / ideal if ideal else float("nan"), per_ep)
        gen = statistics.mean(r.timings.get("generate", 0.0) for r in ok) if ok else 0.0
        print(f"{level:>10} {len(records) / wall:>10.2f} {calls / wall:>8.1f} {calls / max(len(ok), 1):>8.2f} "
              f"{tool_s:>9.3f} {ideal:>11.3f} {ratios[level][0]:>6.3f} {gen:>8.3f} {health['peak']:>11} "
              f"{len(records) - len(ok):>6}")
    top = max(levels)
    ratio, per_ep = ratios[top]
    if per_ep:
        print(f"\nat {top} concurrent episodes: tool time / (calls x latency) = {ratio:.3f} (mean over episodes "
              f"with calls; per episode median {statistics.median(per_ep):.3f}, max {max(per_ep):.3f}); "
              f"acceptance: at most 1.2 -> {'PASS' if ratio <= 1.2 else 'FAIL'}")
    else:
        print(f"\nat {top} concurrent episodes no episode called a tool: the model did not learn to call it")


if __name__ == "__main__":
    main()
