"""Live REST calls (RestBench's TMDB tools when the user gives a key)."""
from __future__ import annotations

import os
import re

import httpx

from toolmaster.tools.spec import RestExecutor, ToolResult

_PATH_PARAM = re.compile(r"\{([^}]+)\}")


def call_rest(ex: RestExecutor, arguments: dict) -> ToolResult:
    key = os.environ.get(ex.api_key_env)
    if not key:
        return ToolResult(False, f"error: the live API needs ${ex.api_key_env}, which is not set where tools run")
    missing = [name for name in _PATH_PARAM.findall(ex.path) if name not in arguments]
    if missing:
        return ToolResult(False, f"error: missing path parameter(s) {', '.join(missing)} for {ex.method} {ex.path}")
    path = _PATH_PARAM.sub(lambda m: str(arguments[m.group(1)]), ex.path)
    query = {k: v for k, v in arguments.items() if f"{{{k}}}" not in ex.path}
    try:
        reply = httpx.request(ex.method, ex.base_url.rstrip("/") + path, params={**query, "api_key": key},
                              timeout=ex.timeout_s)
    except httpx.HTTPError as err:
        return ToolResult(False, f"error: {ex.method} {path} failed: {type(err).__name__}: {err}")
    return ToolResult(reply.status_code == 200, reply.text if reply.status_code == 200
                      else f"error: {ex.method} {path} answered {reply.status_code}: {reply.text[:300]}")
