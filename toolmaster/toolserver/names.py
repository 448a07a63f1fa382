"""StableToolBench's name normalization, which its cache folders and function names are keyed by."""
from __future__ import annotations

import re

_NOT_WORD = re.compile(r"[^\u4e00-\u9fa5a-zA-Z0-9_]")
_RESERVED = {"from", "class", "return", "false", "true", "id", "and"}  # Python-unfriendly api names get "is_"
MAX_FUNCTION_NAME = 64  # OpenAI's limit on function names


def standardize(name: str, not_word: re.Pattern = _NOT_WORD) -> str:
    """Lower-case identifier: other characters (``not_word``) become "_", runs collapse, ends are stripped, no
    leading digit."""
    out = re.sub(r"_+", "_", not_word.sub("_", name)).lower().strip("_")
    if out and out[0].isdigit():
        out = "get_" + out
    return out


def standardize_category(category: str) -> str:
    out = category.replace(" ", "_").replace(",", "_").replace("/", "_")
    return out.replace("__", "_")


def api_key(api_name: str) -> str:
    """The api part of cache file names and function names."""
    name = standardize(api_name)
    return "is_" + name if name in _RESERVED else name


def function_name(tool_name: str, api_name: str) -> str:
    """The OpenAI function an agent calls for one API: ``<api>_for_<tool>``, cut to 64 characters."""
    return f"{api_key(api_name)}_for_{standardize(tool_name)}"[:MAX_FUNCTION_NAME]


def cache_path_parts(category: str, tool_name: str, api_name: str) -> tuple[str, str, str]:
    """(<Category>, <tool>_for_<Category>, <api>) as the StableToolBench cache lays folders out."""
    cat = standardize_category(category)
    tool = tool_name if tool_name.endswith(f"_for_{cat}") else f"{standardize(tool_name)}_for_{cat}"
    api = api_key(api_name)
    suffix = f"_for_{standardize(tool_name)}"
    if api.endswith(suffix):  # clients may send the agent-side function name as api_name
        api = api[: -len(suffix)]
    return cat, tool, api


def escapes(parts: tuple[str, ...]) -> str | None:
    """Why cache path parts could leave the cache directory (a separator, "..", a NUL), or None when each
    is one plain path component."""
    for part in parts:
        if not part or part in (".", "..") or any(c in part for c in ("/", "\\", "\x00")):
            return f"{part!r} is not a plain name (no path separators, '.', '..' or NUL)"
    return None
