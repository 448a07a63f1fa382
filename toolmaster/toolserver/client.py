"""How environments call the tool server: one pooled HTTP client per process, errors as observations."""
from __future__ import annotations

import json
import threading

import httpx

from toolmaster.tools.spec import ToolResult

_clients: dict[tuple[str, float], httpx.Client] = {}
_lock = threading.Lock()


def _client(url: str, timeout: float) -> httpx.Client:
    with _lock:
        key = (url, timeout)
        if key not in _clients:
            _clients[key] = httpx.Client(base_url=url, timeout=timeout,
                                         limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
        return _clients[key]


def truncate_observation(observation: str, max_chars: int | None) -> str:
    """StableToolBench's cut (toolbench/inference/Downstream_tasks/rapidapi.py, ``rapidapi_wrapper.step``):
    an observation longer than ``max_chars`` keeps its first ``max_chars`` characters plus "..."."""
    if max_chars is not None and len(observation) > max_chars:
        return observation[:max_chars] + "..."
    return observation


def call_virtual(url: str, category: str, tool_name: str, api_name: str, arguments: dict, *, key: str = "",
                 timeout: float = 30.0, max_observation_chars: int | None = None) -> ToolResult:
    """POST /virtual; the observation is the server's ``{"error", "response"}`` JSON, as ToolBench agents see it.
    With ``max_observation_chars`` it is StableToolBench's observation: ``json.dumps`` of the reply (ASCII
    escapes, as its rapidapi.py writes it), cut by ``truncate_observation``."""
    body = {"category": category, "tool_name": tool_name, "api_name": api_name,
            "tool_input": json.dumps(arguments), "strip": "", "toolbench_key": key}
    cut = max_observation_chars
    try:
        reply = _client(url, timeout).post("/virtual", json=body)
    except httpx.HTTPError as err:
        return ToolResult(False, truncate_observation(
            f"error: tool server unreachable at {url}: {type(err).__name__}: {err}", cut))
    if reply.status_code != 200:
        return ToolResult(False, truncate_observation(
            f"error: tool server answered {reply.status_code}: {reply.text[:300]}", cut))
    data = reply.json()
    text = json.dumps(data) if cut is not None else json.dumps(data, ensure_ascii=False)
    return ToolResult(not data.get("error"), truncate_observation(text, cut))
