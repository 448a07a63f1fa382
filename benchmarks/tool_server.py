"""The tool server (a real uvicorn process) under load: throughput at concurrency 1 vs 32, and the cache
backend vs the fallback backend, side by side in one run (ratios; absolute times vary by machine).

    .venv/bin/python benchmarks/tool_server.py [--requests 1000]
"""
import argparse
import asyncio
import json
import os
import tempfile
import time

import httpx

from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.toolserver.process import ServerProcess

BODY = {"category": "Data", "tool_name": "TheClique", "api_name": "Songkick concert", "strip": "", "toolbench_key": ""}


async def _load(url: str, total: int, concurrency: int, distinct: int) -> tuple[float, dict]:
    limit = asyncio.Semaphore(concurrency)
    codes: dict = {}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(i: int) -> None:
            async with limit:
                body = {**BODY, "tool_input": json.dumps({"id_conc": f"show-{i % distinct}"})}
                code = (await client.post("/virtual", json=body)).status_code
                codes[code] = codes.get(code, 0) + 1
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        return total / (time.perf_counter() - start), codes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    docs = "env.tool_server.docs=[../shared/data/stabletoolbench/test_instruction/G1_instruction.json]"
    rows = []
    with ServerProcess(build_config(TINY, [docs, "env.tool_server.port=0"]).env.tool_server) as server:
        for concurrency in (1, 32):
            rate, codes = asyncio.run(_load(server.url, args.requests, concurrency, 50))
            rows.append((f"fallback, concurrency {concurrency}", rate, codes))
    with tempfile.TemporaryDirectory() as cache:
        # fill a StableToolBench cache file with every input the load uses, then serve from it alone
        entries = {str({"id_conc": f"show-{i}"}): {"error": "", "response": f"cached {i}"} for i in range(50)}
        folder = f"{cache}/Data/theclique_for_Data"
        os.makedirs(folder)
        with open(f"{folder}/songkick_concert.json", "w") as f:
            json.dump(entries, f)
        cfg = build_config(TINY, [docs, "env.tool_server.port=0", "env.tool_server.backends=[cache]",
                                f"env.tool_server.cache_dir={cache}"]).env.tool_server
        with ServerProcess(cfg) as server:
            rows.append(("cache, concurrency 32", *asyncio.run(_load(server.url, args.requests, 32, 50))))
    base = rows[0][1]
    print(f"{'setting':28} {'req/s':>8} {'vs c=1 fallback':>16}  status codes")
    for name, rate, codes in rows:
        print(f"{name:28} {rate:8.0f} {rate / base:15.2f}x  {codes}")


if __name__ == "__main__":
    main()
