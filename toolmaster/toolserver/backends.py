"""Where a /virtual response comes from, tried in the configured order: cache, simulator LLM, fallback.

A backend answers ``{"error": str, "response": str}`` or None (it has nothing; the next one is tried).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from toolmaster.toolserver.names import cache_path_parts, escapes

log = logging.getLogger("toolmaster.toolserver")


@dataclass(frozen=True)
class VirtualCall:
    category: str
    tool_name: str
    api_name: str
    arguments: dict

    @property
    def parts(self) -> tuple[str, str, str]:
        return cache_path_parts(self.category, self.tool_name, self.api_name)

    @property
    def cache_key(self) -> str:
        return str(self.arguments)  # StableToolBench keys cache files by the Python repr of the input


class Backend(ABC):
    name: str

    @abstractmethod
    def respond(self, call: VirtualCall, doc: dict | None) -> dict | None:
        """The response, or None when this backend has none (the next one is tried)."""


class PathOutsideCache(ValueError):
    pass


class CacheBackend(Backend):
    """StableToolBench's cache: ``<dir>/<Category>/<tool>_for_<Category>/<api>.json`` = {repr(input): response}."""
    name = "cache"

    def __init__(self, cache_dir: str):
        self.root = Path(cache_dir)
        self._files: dict[tuple, dict] = {}
        self._lock = threading.Lock()

    def _file(self, parts) -> Path:
        """The cache file of ``parts``, never outside the cache directory (the app refuses such names with
        a 422 first; this is the second check, after normalization and symlinks)."""
        why = escapes(parts)
        path = self.root.joinpath(*parts[:2], parts[2] + ".json")
        if why is None and not path.resolve().is_relative_to(self.root.resolve()):
            why = f"{path} resolves outside the cache directory"
        if why:
            raise PathOutsideCache(why)
        return path

    def _entries(self, parts) -> dict:
        if parts not in self._files:
            path = self._file(parts)
            try:
                self._files[parts] = json.loads(path.read_text()) if path.exists() else {}
            except (OSError, json.JSONDecodeError) as err:
                log.warning("cache file %s unreadable (%s); treated as empty", path, err)
                self._files[parts] = {}
        return self._files[parts]

    def respond(self, call, doc):
        with self._lock:
            return self._entries(call.parts).get(call.cache_key)

    def examples(self, call: VirtualCall, limit: int = 3) -> list:
        with self._lock:
            return list(self._entries(call.parts).items())[:limit]

    def store(self, call: VirtualCall, response: dict) -> None:
        """Write-back, atomically (a reader never sees half a file)."""
        with self._lock:
            entries = self._entries(call.parts)
            entries[call.cache_key] = response
            path = self._file(call.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".json.tmp{os.getpid()}")
            tmp.write_text(json.dumps(entries, indent=1, ensure_ascii=False))
            os.replace(tmp, path)


SIMULATOR_PROMPT = (
    "You are an API server. Given the documentation of one API, a few example calls with their responses, and "
    "a new call's input, reply with the response this API would return for that input. Reply with one JSON "
    'object and nothing else: {"error": "", "response": "<the API response as text>"}. Keep the error empty '
    "unless the input is invalid for this API. Make the response specific to the input, realistic and brief "
    "(under 200 words)."
)


class SimulatorBackend(Backend):
    """An LLM plays the API (a GPT-class model) prompted with the API document in this project's own format
    (``env.tool_server.simulator_format=generic``: e.g. TMDB's OpenAPI operations). MirrorAPI-Cache gets its
    own training format instead: toolserver/mirrorapi.py."""
    name = "simulator"

    def __init__(self, endpoint_cfg, cache: CacheBackend | None = None):
        from toolmaster.llm.client import ChatClient

        self.client = ChatClient(endpoint_cfg)
        self.cache = cache

    def respond(self, call, doc):
        from toolmaster.llm.client import EndpointError

        examples = self.cache.examples(call) if self.cache else []
        user = (f"API documentation: {json.dumps(_doc_summary(doc, call), ensure_ascii=False)}\n"
                f"Examples: {json.dumps(examples, ensure_ascii=False)[:2048]}\n"
                f"Input: {json.dumps(call.arguments, ensure_ascii=False)}")
        try:
            text = self.client.chat([{"role": "system", "content": SIMULATOR_PROMPT},
                                     {"role": "user", "content": user}])
        except EndpointError as err:
            log.warning("simulator unavailable: %s", err)
            return None
        return parse_simulated(text)


def parse_simulated(text: str) -> dict | None:
    """The simulator's reply as a response; non-JSON text is taken as the response body itself."""
    body = text.strip().removeprefix("```json").removesuffix("```").strip()
    if not body:
        return None
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return {"error": "", "response": body}
    if isinstance(data, dict) and "response" in data:
        response = data["response"]
        return {"error": str(data.get("error") or ""),
                "response": response if isinstance(response, str) else json.dumps(response, ensure_ascii=False)}
    return {"error": "", "response": json.dumps(data, ensure_ascii=False)}


def _doc_summary(doc: dict | None, call: VirtualCall) -> dict:
    if doc is None:
        return {"tool": call.tool_name, "api": call.api_name}
    keep = ("tool_name", "api_name", "api_description", "required_parameters", "optional_parameters",
            "parameters", "method", "path", "template_response")
    return {k: doc[k] for k in keep if k in doc}


class FallbackBackend(Backend):
    """Offline and deterministic: a response shaped like the document's template (or OpenAPI example),
    filled with values derived from the input, so the same call always gets the same answer."""
    name = "fallback"

    def respond(self, call, doc):
        if doc is None:
            return {"error": f"unknown API {call.api_name!r} of tool {call.tool_name!r}", "response": ""}
        seed = hashlib.sha256(f"{call.parts}|{call.cache_key}".encode()).hexdigest()
        if doc.get("template_response") is not None:
            body = _fill(doc["template_response"], seed, "")
        elif doc.get("response_example") is not None:
            body = doc["response_example"]
        else:
            body = {"result": f"{call.parts[2]}-{seed[:8]}"}
        return {"error": "", "response": json.dumps(body, ensure_ascii=False)[:4000]}


def _fill(template, seed: str, key: str):
    """StableToolBench templates: type names ("str", "int", ...), dicts, and lists with "_list_length"."""
    digest = int(hashlib.sha256(f"{seed}|{key}".encode()).hexdigest()[:8], 16)
    if isinstance(template, dict):
        n = template.get("_list_length")
        fields = {k: _fill(v, seed, f"{key}.{k}") for k, v in template.items() if k != "_list_length"}
        if n is not None:  # a dict standing for one item of a list
            return [{k: _fill(v, seed, f"{key}[{i}].{k}") for k, v in template.items() if k != "_list_length"}
                    for i in range(min(int(n), 3))]
        return fields
    if isinstance(template, list):
        if len(template) == 1 and isinstance(template[0], dict) and "_list_length" in template[0]:
            return _fill(template[0], seed, key)
        return [_fill(item, seed, f"{key}[{i}]") for i, item in enumerate(template[:3])]
    if template in ("int", "float", "number"):
        return digest % 1000
    if template in ("bool", "boolean"):
        return bool(digest % 2)
    if template == "NoneType":
        return None
    if isinstance(template, str) and template.startswith("list of"):
        return [f"{key.rsplit('.', 1)[-1] or 'item'}-{(digest + i) % 997}" for i in range(2)]
    return f"{key.rsplit('.', 1)[-1] or 'value'}-{digest % 9973}"


def _simulator(cfg, cache: CacheBackend | None) -> Backend:
    if cfg.simulator_format == "mirrorapi":
        from toolmaster.toolserver.mirrorapi import MirrorApiBackend
        return MirrorApiBackend(cfg)
    return SimulatorBackend(cfg.simulator, cache)


def make_backends(cfg) -> list[Backend]:
    """The configured backends in order (the config checked each is set up); the simulator reads cache examples."""
    cache = CacheBackend(cfg.cache_dir) if cfg.cache_dir else None
    made = {"cache": lambda: cache, "simulator": lambda: _simulator(cfg, cache),
            "fallback": FallbackBackend}
    return [made[name]() for name in cfg.backends]
