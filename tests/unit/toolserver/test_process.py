"""The tool server as a real uvicorn process (`toolmaster serve-tools`), under concurrent load."""
import asyncio
import json

import httpx

from tests.unit.toolserver.test_app import BODY, server_cfg
from toolmaster.toolserver.client import call_virtual
from toolmaster.toolserver.process import ServerProcess


async def _load(url: str, total: int, concurrency: int) -> list[int]:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(i: int) -> int:
            async with limit:
                body = {**BODY, "toolbench_key": "k", "tool_input": json.dumps({"id_conc": f"show-{i % 50}"})}
                return (await client.post("/virtual", json=body)).status_code
        return await asyncio.gather(*(one(i) for i in range(total)))


def test_thousand_requests_at_concurrency_32_without_5xx():
    with ServerProcess(server_cfg("env.tool_server.port=0", "env.tool_server.api_keys=[k]",
                                  "env.tool_server.max_concurrency=8")) as server:
        codes = asyncio.run(_load(server.url, 1000, 32))
        assert codes.count(200) == 1000, {c: codes.count(c) for c in set(codes)}
        health = httpx.get(server.url + "/health").json()
        assert health["counts"]["fallback_hit"] == 1000 and health["in_flight"] == 0
        # the client environments use: an observation, never an exception
        ok = call_virtual(server.url, "Data", "TheClique", "Songkick concert", {"id_conc": "x"}, key="k")
        denied = call_virtual(server.url, "Data", "TheClique", "Songkick concert", {"id_conc": "x"}, key="wrong")
        assert ok.ok and "venue_name" in ok.content
        assert not denied.ok and "401" in denied.content
        bad = httpx.post(server.url + "/virtual", json={"category": "Data", "toolbench_key": "k"})
        assert bad.status_code == 422 and "api_name" in bad.text
    gone = call_virtual(server.url, "Data", "TheClique", "Songkick concert", {}, timeout=2)
    assert not gone.ok and "unreachable" in gone.content
