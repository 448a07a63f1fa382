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


def call_virtual(url: str, category: str, tool_name: str, api_name: str, arguments: dict, *, key: str = "",
                 timeout: float = 30.0) -> ToolResult:
    """POST /virtual; the observation is the server's ``{"error", "response"}`` JSON, as ToolBench agents see it."""
    body = {"category": category, "tool_name": tool_name, "api_name": api_name,
            "tool_input": json.dumps(arguments), "strip": "", "toolbench_key": key}
    try:
        reply = _client(url, timeout).post("/virtual", json=body)
    except httpx.HTTPError as err:
        return ToolResult(False, f"error: tool server unreachable at {url}: {type(err).__name__}: {err}")
    if reply.status_code != 200:
        return ToolResult(False, f"error: tool server answered {reply.status_code}: {reply.text[:300]}")
    data = reply.json()
    return ToolResult(not data.get("error"), json.dumps(data, ensure_ascii=False))
