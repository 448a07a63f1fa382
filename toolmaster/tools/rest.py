"""Live REST calls (RestBench's TMDB tools when the user gives a key)."""
from __future__ import annotations

import asyncio
import os
import re
import weakref

import httpx

from toolmaster.tools.spec import RestExecutor, ToolResult

_PATH_PARAM = re.compile(r"\{([^}]+)\}")


def _request(ex: RestExecutor, arguments: dict) -> tuple[dict | None, ToolResult | None]:
    """The request's parts, or the error observation that replaces it."""
    key = os.environ.get(ex.api_key_env)
    if not key:
        return None, ToolResult(False, f"error: the live API needs ${ex.api_key_env}, which is not set where tools run")
    missing = [name for name in _PATH_PARAM.findall(ex.path) if name not in arguments]
    if missing:
        return None, ToolResult(False, f"error: missing path parameter(s) {', '.join(missing)} for {ex.method} "
                                       f"{ex.path}")
    path = _PATH_PARAM.sub(lambda m: str(arguments[m.group(1)]), ex.path)
    query = {k: v for k, v in arguments.items() if f"{{{k}}}" not in ex.path}
    return {"method": ex.method, "url": ex.base_url.rstrip("/") + path, "params": {**query, "api_key": key},
            "path": path}, None


def _result(ex: RestExecutor, path: str, reply: httpx.Response | None, err: Exception | None) -> ToolResult:
    if reply is None:
        return ToolResult(False, f"error: {ex.method} {path} failed: {type(err).__name__}: {err}")
    return ToolResult(reply.status_code == 200, reply.text if reply.status_code == 200
                      else f"error: {ex.method} {path} answered {reply.status_code}: {reply.text[:300]}")


def call_rest(ex: RestExecutor, arguments: dict) -> ToolResult:
    request, error = _request(ex, arguments)
    if error:
        return error
    path = request.pop("path")
    try:
        reply = httpx.request(**request, timeout=ex.timeout_s)
    except httpx.HTTPError as err:
        return _result(ex, path, None, err)
    return _result(ex, path, reply, None)


async def acall_rest(ex: RestExecutor, arguments: dict) -> ToolResult:
    """``call_rest`` awaited, on this event loop's pooled client."""
    request, error = _request(ex, arguments)
    if error:
        return error
    path = request.pop("path")
    try:
        reply = await _async_client().request(**request, timeout=ex.timeout_s)
    except httpx.HTTPError as err:
        return _result(ex, path, None, err)
    return _result(ex, path, reply, None)


_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = weakref.WeakKeyDictionary()


def _async_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = httpx.AsyncClient()
    return _clients[loop]
