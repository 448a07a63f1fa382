"""API documents the server answers for: StableToolBench ``api_list`` entries and OpenAPI operations.

Each document is keyed like the cache, by (Category, tool_for_Category, api), so a request finds its
document whichever backend answers it.
"""
from __future__ import annotations

import json
from pathlib import Path

from toolmaster.toolserver.names import cache_path_parts

OPENAPI_CATEGORY = "OpenAPI"


def openapi_tool_name(path: str | Path) -> str:
    """An OpenAPI spec file names its tool: ``tmdb_oas.json`` → ``tmdb``."""
    return Path(path).stem.removesuffix("_oas")


def openapi_operations(spec: dict, tool: str) -> list[dict]:
    """One document per (method, path) of an OpenAPI 3 spec, with path-level parameters merged in."""
    docs = []
    for path, item in spec.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method == "parameters" or not isinstance(op, dict):
                continue
            params = _resolve_params(spec, shared + op.get("parameters", []))
            docs.append({
                "category_name": OPENAPI_CATEGORY, "tool_name": tool, "api_name": f"{method.upper()} {path}",
                "api_description": op.get("description") or op.get("summary", ""), "method": method.upper(),
                "path": path, "parameters": params, "response_example": _example(op),
            })
    return docs


def _resolve_params(spec: dict, params: list[dict]) -> list[dict]:
    out = []
    for p in params:
        if "$ref" in p:
            p = _ref(spec, p["$ref"])
        if p.get("in") in ("path", "query"):
            out.append(p)
    return out


def _ref(spec: dict, ref: str) -> dict:
    node = spec
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def _example(op: dict):
    content = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
    examples = content.get("examples") or {}
    for example in examples.values():
        if isinstance(example, dict) and "value" in example:
            return example["value"]
    return content.get("example")


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"API document file {str(path)!r} is not readable JSON: {err}") from err


class DocRegistry:
    def __init__(self, docs: list[dict] | None = None):
        self._docs: dict[tuple[str, str, str], dict] = {}
        for doc in docs or []:
            self.add(doc)

    def add(self, doc: dict) -> None:
        self._docs[cache_path_parts(doc["category_name"], doc["tool_name"], doc["api_name"])] = doc

    def get(self, category: str, tool_name: str, api_name: str) -> dict | None:
        return self._docs.get(cache_path_parts(category, tool_name, api_name))

    def __len__(self) -> int:
        return len(self._docs)

    def add_tools_dir(self, root: str | Path) -> None:
        """A ToolEnv2404-style tools folder (``<root>/<Category>/<tool>.json`` with ``tool_name``,
        ``tool_description`` and ``api_list`` of ``{name, description, required_parameters, ...}``): one
        document per API, where a query file has not given one already."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"tools folder {str(root)!r} does not exist")
        for file in sorted(root.glob("*/*.json")):
            tool = _load_json(file)
            if not isinstance(tool, dict) or not isinstance(tool.get("api_list"), list):
                continue
            for api in tool["api_list"]:
                doc = {"category_name": file.parent.name, "tool_name": tool.get("tool_name") or file.stem,
                       "api_name": api.get("name", ""), "api_description": api.get("description") or "",
                       "required_parameters": api.get("required_parameters") or [],
                       "optional_parameters": api.get("optional_parameters") or [],
                       "method": api.get("method", ""), "tool_description": tool.get("tool_description") or ""}
                if doc["api_name"] and self.get(doc["category_name"], doc["tool_name"], doc["api_name"]) is None:
                    self.add(doc)

    @classmethod
    def from_paths(cls, paths: list[str]) -> "DocRegistry":
        """StableToolBench query files (or their folder) and OpenAPI specs; a missing path is an error."""
        registry = cls()
        for raw in paths:
            path = Path(raw)
            if not path.exists():
                raise FileNotFoundError(f"API document path {raw!r} does not exist")
            for file in sorted(path.glob("*.json")) if path.is_dir() else [path]:
                data = _load_json(file)
                if isinstance(data, dict) and "openapi" in data:
                    for doc in openapi_operations(data, openapi_tool_name(file)):
                        registry.add(doc)
                elif isinstance(data, list):
                    for query in data:
                        for doc in query.get("api_list", []):
                            registry.add(doc)
                else:
                    raise ValueError(f"{str(file)!r} is neither StableToolBench queries nor an OpenAPI spec")
        return registry
