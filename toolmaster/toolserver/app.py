"""The FastAPI app: StableToolBench's ``POST /virtual`` (same request and response schema), ``GET /health``.

Requests are validated (422 names the field; names that would leave the cache directory are refused),
bounded in size (413), authorised by key when keys are configured (401), and answered by the first backend
that has a response; at most ``max_concurrency`` are worked on at once.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field, field_validator

from toolmaster.toolserver.backends import CacheBackend, VirtualCall, make_backends
from toolmaster.toolserver.docs import DocRegistry
from toolmaster.toolserver.names import escapes

log = logging.getLogger("toolmaster.toolserver")


class VirtualRequest(BaseModel):
    category: str = Field(min_length=1)
    tool_name: str = Field(min_length=1)
    api_name: str = Field(min_length=1)
    tool_input: str | dict = ""
    strip: str = ""
    toolbench_key: str = ""

    @field_validator("tool_input")
    @classmethod
    def _json_object(cls, value):
        """Clients send the input as a JSON string or an object; "" means no arguments."""
        if isinstance(value, dict):
            return value
        if not value.strip():
            return {}
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"tool_input is not valid JSON: {err}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"tool_input must be a JSON object, got {type(parsed).__name__}")
        return parsed


def create_app(cfg, docs: DocRegistry | None = None) -> FastAPI:
    """``cfg`` is a ToolServerConfig; ``docs`` defaults to the documents ``cfg.docs`` names."""
    if docs is None:
        docs = DocRegistry.from_paths(cfg.docs)
        if cfg.tools_dir:
            docs.add_tools_dir(cfg.tools_dir)
    backends = make_backends(cfg)
    cache = next((b for b in backends if isinstance(b, CacheBackend)), None)
    counts: Counter = Counter()
    app = FastAPI(title="ToolMaster tool server")
    app.state.limit = asyncio.Semaphore(cfg.max_concurrency)
    app.state.in_flight = 0
    workers = ThreadPoolExecutor(cfg.max_concurrency, thread_name_prefix="virtual")  # backends block (files, LLM calls)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        """413 before the body is parsed: by the declared length, or by what arrives when none is declared."""
        from fastapi.responses import JSONResponse

        declared = request.headers.get("content-length")
        too_big = JSONResponse({"detail": f"request body over {cfg.max_body_bytes} bytes"}, status_code=413)
        if declared is not None and declared.isdigit() and int(declared) > cfg.max_body_bytes:
            counts["too_large"] += 1
            return too_big
        if declared is None and request.method == "POST":
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > cfg.max_body_bytes:
                    counts["too_large"] += 1
                    return too_big
        return await call_next(request)

    def check_key(request: Request, body: VirtualRequest) -> VirtualRequest:
        if cfg.api_keys:
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if body.toolbench_key not in cfg.api_keys and bearer not in cfg.api_keys:
                counts["unauthorized"] += 1
                raise HTTPException(status_code=401, detail="invalid or missing key (toolbench_key or Bearer)")
        return body

    def answer(call: VirtualCall) -> dict:
        doc = docs.get(call.category, call.tool_name, call.api_name)
        for backend in backends:
            response = backend.respond(call, doc)
            if response is not None:
                counts[f"{backend.name}_hit"] += 1
                log.info("%s/%s/%s: %s hit", *call.parts, backend.name)
                simulated = backend.name == "simulator"  # the generic or the MirrorAPI simulator
                if simulated and cache is not None and cfg.write_back and not response["error"]:
                    cache.store(call, response)
                return response
            counts[f"{backend.name}_miss"] += 1
            log.info("%s/%s/%s: %s miss", *call.parts, backend.name)
        counts["unanswered"] += 1
        return {"error": f"no backend could answer {call.api_name!r} of tool {call.tool_name!r}", "response": ""}

    @app.post("/virtual")
    async def virtual(body: VirtualRequest = Depends(check_key)) -> dict:
        call = VirtualCall(body.category, body.tool_name, body.api_name, body.tool_input)
        why = escapes(call.parts)
        if why:
            counts["refused_name"] += 1
            raise HTTPException(status_code=422, detail=f"category/tool_name/api_name: {why}")
        if len(json.dumps(body.tool_input, default=str)) > cfg.max_tool_input_chars:
            counts["too_large"] += 1
            raise HTTPException(status_code=413, detail=f"tool_input over {cfg.max_tool_input_chars} characters")
        async with app.state.limit:
            app.state.in_flight += 1
            try:
                return await asyncio.get_running_loop().run_in_executor(workers, answer, call)
            finally:
                app.state.in_flight -= 1

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "backends": [b.name for b in backends], "docs": len(docs),
                "in_flight": app.state.in_flight, "max_concurrency": cfg.max_concurrency, "counts": dict(counts)}

    return app
