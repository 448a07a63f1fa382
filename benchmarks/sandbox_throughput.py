"""Sandboxed tool calls vs calling the same tool in-process, in one run (ratios, not absolute times).

Each sandboxed call forks a fresh child of a template process; rows with ``isolate`` run the template in
user/mount/PID/network namespaces with seccomp in every child, rows without keep only the fork per call
and the audit hook.

    .venv/bin/python benchmarks/sandbox_throughput.py [--calls 2000]
"""
import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from toolmaster.config import Config
from toolmaster.envs import make_env
from toolmaster.tools.sandbox import SandboxPool


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    task = make_env(Config().env).tasks("train", 1)[0]
    tool = task.tool(task.metadata["plan"][0])
    param = task.metadata["params"][tool.name]
    call_args = {param: task.metadata["chain"][0], **({} if task.metadata["quirks"][tool.name]["kind"] != "enum"
                                                      else {task.metadata["quirks"][tool.name]["option"]: "x"})}

    namespace: dict = {}
    exec(tool.executor.source, namespace)
    fn = namespace[tool.name]
    t = time.perf_counter()
    for _ in range(args.calls):
        try:
            fn(**call_args)
        except ValueError:
            pass
    in_process = (time.perf_counter() - t) / args.calls

    rows = [("in-process exec (no isolation)", in_process)]
    for isolate, workers, threads in [(True, 1, 1), (True, 2, 4), (False, 2, 4)]:
        with SandboxPool(workers=workers, timeout_s=10, isolate=isolate) as pool:
            with ThreadPoolExecutor(threads) as ex:  # start every process before timing
                list(ex.map(lambda _: pool.call(tool.executor.source, tool.name, call_args), range(2 * workers)))
            layers = [k for k, on in pool.layers().items() if on is True]
            t = time.perf_counter()
            with ThreadPoolExecutor(threads) as ex:
                list(ex.map(lambda _: pool.call(tool.executor.source, tool.name, call_args), range(args.calls)))
            rows.append((f"sandbox{' isolated' if isolate else ''}, {workers} template(s), {threads} caller thread(s)",
                         (time.perf_counter() - t) / args.calls))
            if isolate:
                print(f"isolation layers active: {', '.join(layers) or 'none'}")
    print(f"{'mode':52s} {'calls/s':>9s} {'us/call':>9s} {'x in-process':>13s}")
    for name, per_call in rows:
        print(f"{name:52s} {1 / per_call:9.0f} {per_call * 1e6:9.1f} {per_call / in_process:13.1f}")


if __name__ == "__main__":
    main()
