"""RestBench-TMDB: 100 movie/TV queries over the 54 GET endpoints of TMDB's OpenAPI spec.

Tools are generated from the spec (path and query parameters). With ``$TMDB_API_KEY`` set they call the
live API; otherwise the StableToolBench-compatible tool server answers (simulator or fallback). The
metric needs no live API: the correct-path rate (the gold ``solution`` endpoints appear in the agent's
calls in order, as a subsequence).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from toolmaster.envs.base import Environment, Task
from toolmaster.tools.spec import RestExecutor, Tool, VirtualApiExecutor
from toolmaster.toolserver.docs import openapi_operations, openapi_tool_name
from toolmaster.toolserver.names import standardize

_TYPES = {"integer", "number", "string", "boolean", "array", "object"}


def endpoint_function(api_name: str) -> str:
    """``GET /person/{person_id}/movie_credits`` → ``get_person_person_id_movie_credits``."""
    return standardize(api_name)


def operation_schema(op: dict) -> dict:
    props, required = {}, []
    for p in op["parameters"]:
        schema = p.get("schema", {})
        spec = {"type": schema.get("type") if schema.get("type") in _TYPES else "string",
                "description": f"({p['in']} parameter) {p.get('description', '')}".strip()}
        if "enum" in schema:
            spec["enum"] = schema["enum"]
        props[p["name"]] = spec
        if p.get("required") or p["in"] == "path":
            required.append(p["name"])
    return {"name": endpoint_function(op["api_name"]),
            "description": f"{op['api_name']}: {op['api_description']}"[:1024],
            "parameters": {"type": "object", "properties": props, "required": required}}


def load_tools(cfg, server_cfg) -> list[Tool]:
    """One tool per spec operation; live when the API key is set in this process, else the tool server."""
    spec_path = Path(cfg.spec)
    if not spec_path.is_file():
        raise FileNotFoundError(f"TMDB OpenAPI spec {cfg.spec!r} does not exist")
    tool_name = openapi_tool_name(spec_path)
    live = bool(os.environ.get(cfg.api_key_env))
    url = server_cfg.url or f"http://{server_cfg.host}:{server_cfg.port}"
    tools = []
    for op in openapi_operations(json.loads(spec_path.read_text()), tool_name):
        executor = (RestExecutor(cfg.base_url, op["method"], op["path"], cfg.api_key_env) if live else
                    VirtualApiExecutor(url, op["category_name"], tool_name, op["api_name"], key=server_cfg.key,
                                       timeout_s=server_cfg.timeout_s,
                                       max_connections=server_cfg.client_max_connections))
        tools.append(Tool(operation_schema(op), executor))
    return tools


def covers_in_order(gold: list[str], calls: list[str]) -> bool:
    """Every gold call appears in ``calls``, in the gold order (other calls may come between)."""
    remaining = iter(calls)
    return all(any(call == want for call in remaining) for want in gold)


def load_queries(data: str) -> list[dict]:
    path = Path(data)
    if path.is_dir():
        path = path / "tmdb.json"
    if not path.is_file():
        raise FileNotFoundError(f"RestBench TMDB queries {data!r} not found (a tmdb.json file or its folder)")
    return json.loads(path.read_text())


class TMDB(Environment):
    name = "tmdb"
    metric = "correct_path_rate"
    metric_scale = 100.0
    splits = ("test",)

    def __init__(self, cfg, server_cfg, judge_cfg=None):
        self.judge_cfg = judge_cfg
        self._judge = None
        tools = tuple(load_tools(cfg, server_cfg))
        self._tasks = [Task(id=f"tmdb-{i}", question=q["query"], tools=tools, reference=json.dumps(q["solution"]),
                            metadata={"solution": q["solution"]})
                       for i, q in enumerate(load_queries(cfg.data))]

    def tasks(self, split: str = "test", num: int | None = None, start: int = 0) -> list[Task]:
        self.require_split(split)
        return self._slice(self._tasks, num, start)

    def grade(self, task, episode) -> float:
        gold = [endpoint_function(path) for path in task.metadata["solution"]]
        return float(covers_in_order(gold, episode.calls))

    def judgments(self, task, episode) -> dict[str, float]:
        """With a judge configured: RestBench's success rate (does the final answer solve the query)."""
        if self.judge_cfg is None or not self.judge_cfg.base_url:
            return {}
        from toolmaster.llm.judge import PassJudge, tool_trace

        if self._judge is None:
            self._judge = PassJudge(self.judge_cfg)
        return {"success": self._judge.score(task.question, episode.answer, tool_trace(episode))}
