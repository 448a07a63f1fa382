"""Live REST calls (RestBench's TMDB tools when the user gives a key)."""
from __future__ import annotations

import asyncio
import os
import re
import weakref

import aiohttp
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


def _result(ex: RestExecutor, path: str, reply: tuple[int, str] | None, err: Exception | None) -> ToolResult:
    """``reply`` is (status, body text); None with ``err`` when the request failed."""
    if reply is None:
        return ToolResult(False, f"error: {ex.method} {path} failed: {type(err).__name__}: {err}")
    status, text = reply
    return ToolResult(status == 200, text if status == 200
                      else f"error: {ex.method} {path} answered {status}: {text[:300]}")


def call_rest(ex: RestExecutor, arguments: dict) -> ToolResult:
    request, error = _request(ex, arguments)
    if error:
        return error
    path = request.pop("path")
    try:
        reply = httpx.request(**request, timeout=ex.timeout_s)
    except httpx.HTTPError as err:
        return _result(ex, path, None, err)
    return _result(ex, path, (reply.status_code, reply.text), None)


async def acall_rest(ex: RestExecutor, arguments: dict) -> ToolResult:
    """``call_rest`` awaited, on this event loop's pooled session (aiohttp, as toolserver/client.py)."""
    request, error = _request(ex, arguments)
    if error:
        return error
    path = request.pop("path")
    request["params"] = [(k, _plain(item)) for k, v in request["params"].items()
                         for item in (v if isinstance(v, (list, tuple)) else [v])]
    try:
        async with _async_client().request(**request, timeout=aiohttp.ClientTimeout(total=ex.timeout_s)) as reply:
            answer = reply.status, await reply.text()
    except (aiohttp.ClientError, asyncio.TimeoutError) as err:
        return _result(ex, path, None, err)
    return _result(ex, path, answer, None)


async def close_async_client() -> None:
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


def _plain(value) -> str:
    """A query value as httpx writes it (the blocking path), for aiohttp, which takes only strings and numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


_sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]" = weakref.WeakKeyDictionary()


def _async_client() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    if loop not in _sessions or _sessions[loop].closed:
        _sessions[loop] = aiohttp.ClientSession()
    return _sessions[loop]
