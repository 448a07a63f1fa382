"""Sandboxed tool calls vs calling the same tool in-process, in one run (ratios, not absolute times).

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
    for workers, threads in [(1, 1), (2, 4)]:
        with SandboxPool(workers=workers, timeout_s=10) as pool:
            pool.call(tool.executor.source, tool.name, call_args)  # start the processes
            t = time.perf_counter()
            with ThreadPoolExecutor(threads) as ex:
                list(ex.map(lambda _: pool.call(tool.executor.source, tool.name, call_args), range(args.calls)))
            rows.append((f"sandbox, {workers} process(es), {threads} caller thread(s)",
                         (time.perf_counter() - t) / args.calls))
    print(f"{'mode':48s} {'us/call':>10s} {'x in-process':>13s}")
    for name, per_call in rows:
        print(f"{name:48s} {per_call * 1e6:10.1f} {per_call / in_process:13.1f}")


if __name__ == "__main__":
    main()
