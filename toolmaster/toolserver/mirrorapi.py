"""The simulator as StableToolBench's MirrorAPI server prompts it (``server/main_mirrorapi_cache.py``).

MirrorAPI-Cache was trained on one request format; this backend sends exactly the messages that server sends
for the same ``/virtual`` call and reads the reply the same way:

- the system prompt is ``SFT_SYSTEM`` of ``server/system_prompts.py`` in the user's StableToolBench checkout
  (``env.tool_server.stabletoolbench_dir``), read at run time by parsing the file (never executed, never
  copied into this project);
- the API doc comes from a ToolEnv2404-style tools folder (``env.tool_server.tools_dir``:
  ``<dir>/<Category>/<tool>.json`` holding ``tool_description`` and ``api_list``), as the server reads its
  ``tools_folder``;
- the user turn is ``API doc:\\n{api_doc}\\n\\nRequest:\\n{request}`` with both dicts in their Python repr;
- temperature, max_tokens and seed: the server's (0.1 in its config_mirrorapi_cache.yml, 2048, 42), from
  ``env.tool_server.simulator`` and ``simulator_seed``.

Followed: THUNLP-MT/StableToolBench@aa4ed9f4737ad98bd706663f01d63623c3427812, ``server/main_mirrorapi_cache.py``
(``prepare_tool_name_and_url``, ``get_virtual_response``, ``fake_response_function_with_trained_simulator``,
``extract_attributes_json``) and ``server/utils.py`` (``standardize``, ``change_name``).
"""
from __future__ import annotations

import ast
import json
import logging
import re
import threading
from pathlib import Path

from toolmaster.config_base import ConfigError
from toolmaster.toolserver.names import standardize

log = logging.getLogger("toolmaster.toolserver")

USER_PROMPT = "API doc:\n{api_doc}\n\nRequest:\n{request}"
SYSTEM_PROMPT_FILE = ("server", "system_prompts.py")
FAILED = {"error": "Failed to generate fake response", "response": ""}


def load_system_prompt(checkout: str | Path, name: str = "SFT_SYSTEM") -> str:
    """The string constant ``name`` of ``server/system_prompts.py`` in a StableToolBench checkout, read with
    ``ast`` (the file is parsed, not run)."""
    path = Path(checkout).joinpath(*SYSTEM_PROMPT_FILE)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError) as err:
        raise ConfigError(f"env.tool_server.stabletoolbench_dir: cannot read {path}: {err}") from None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
            raise ConfigError(f"{path}: {name} is not a string literal")
    raise ConfigError(f"env.tool_server.stabletoolbench_dir: {path} defines no {name}")


# --- StableToolBench's name rules, as its server applies them (server/utils.py) -----------------------------
_UPSTREAM_NOT_WORD = re.compile("[^\\u4e00-\\u9fa5^a-z^A-Z^0-9^_]")  # its class also keeps "^"


def upstream_standardize(string: str) -> str:
    return standardize(string, _UPSTREAM_NOT_WORD)


def upstream_change_name(name: str) -> str:
    return "is_" + name if name in ("from", "class", "return", "false", "true", "id", "and") else name


def upstream_category(category: str) -> str:
    out = category.replace(" ", "_").replace(",", "_").replace("/", "_")
    while " " in out or "," in out:
        out = out.replace(" ", "_").replace(",", "_")
    return out.replace("__", "_")


class ToolFiles:
    """A ToolEnv2404-style tools folder, each file read once."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._files: dict[Path, dict | None] = {}
        self._lock = threading.Lock()

    def read(self, category: str, tool: str) -> dict | None:
        path = self.root / category / f"{tool}.json"
        with self._lock:
            if path not in self._files:
                try:
                    self._files[path] = json.loads(path.read_text()) if path.is_file() else None
                except (OSError, json.JSONDecodeError) as err:
                    log.warning("tool file %s unreadable: %s", path, err)
                    self._files[path] = None
            return self._files[path]


def build_messages(call, system: str, tools: ToolFiles) -> list[dict] | None:
    """The messages StableToolBench's MirrorAPI server sends for this call (``call``, a VirtualCall, holds the
    request's category, tool_name and api_name as received, and its parsed tool_input); None where that server
    finds no API doc for it (it would fail the request)."""
    standard_category = upstream_category(call.category)
    tool_name_original = call.tool_name
    api_name = upstream_change_name(upstream_standardize(call.api_name)).split(f"_for_{tool_name_original}")[0]
    tool_name_real = tool_name_original.split("_for_")[0] if "_for_" in tool_name_original else tool_name_original
    api_name = upstream_standardize(api_name)
    intro = tools.read(standard_category, upstream_standardize(tool_name_original).split("_for_")[0])
    if intro is None:
        return None
    api_info = [api for api in intro.get("api_list", []) if api_name == upstream_standardize(api.get("name", ""))]
    if not api_info:
        return None
    api_doc = {
        "api_name": api_name,
        "api_description": api_info[0]["description"],
        "required_parameters": api_info[0]["required_parameters"],
        "optional_parameters": api_info[0]["optional_parameters"],
        "tool_description": intro["tool_description"],
        "tool_name": tool_name_real,
        "tool_category": standard_category,
    }
    request = {**call.arguments}
    request.pop("toolbench_key", None)
    return [{"role": "system", "content": system},
            {"role": "user", "content": USER_PROMPT.format(api_doc=api_doc, request=request)}]


def parse_reply(output: str) -> dict:
    """The simulator's text as that server reads it: JSON, else the regular expressions for
    ``"error": "...", "response": "...`` (the response runs to the end of the text); a reply with neither an
    error nor a response is its "Failed to generate fake response" error. Where the server would raise (a
    JSON reply without those keys), the same error is returned."""
    try:
        data = json.loads(output)
    except (json.JSONDecodeError, TypeError):
        if "mechanism_of_the_api" in output:
            pattern = (r'"mechanism_of_the_api"\s*:\s*"(.*?)",\s*'
                       r'"error"\s*:\s*"(.*?)",\s*'
                       r'"response"\s*:\s*"(.*)')
            match = re.search(pattern, output, re.DOTALL)
            data = {"error": match.group(2), "response": match.group(3)} if match else None
        else:
            match = re.search(r'"error":\s*"([^"]*)",\s*"response":\s*"(.*)', output, re.DOTALL)
            data = {"error": match.group(1), "response": match.group(2)} if match else None
    if not isinstance(data, dict) or "error" not in data or "response" not in data:
        return dict(FAILED)
    error, response = data["error"], data["response"]
    if error or response:
        return {"error": error, "response": response}
    return dict(FAILED)


class MirrorApiBackend:
    """MirrorAPI-Cache (or any model served in its format) on an OpenAI-compatible endpoint; a Backend of
    backends.py (not subclassed here: that module makes this one)."""
    name = "simulator"

    def __init__(self, cfg, system: str | None = None):
        from toolmaster.llm.client import ChatClient

        self.client = ChatClient(cfg.simulator)
        self.seed = cfg.simulator_seed
        self.system = system if system is not None else load_system_prompt(cfg.stabletoolbench_dir)
        self.tools = ToolFiles(cfg.tools_dir)

    def messages(self, call) -> list[dict] | None:
        return build_messages(call, self.system, self.tools)

    def respond(self, call, doc):
        from toolmaster.llm.client import EndpointError

        messages = self.messages(call)
        if messages is None:
            log.warning("%s/%s/%s: no API doc in the tools folder %s; the simulator cannot answer",
                        call.category, call.tool_name, call.api_name, self.tools.root)
            return None
        try:
            text = self.client.chat(messages, seed=self.seed)
        except EndpointError as err:
            log.warning("simulator unavailable: %s", err)
            return None
        return parse_reply(text)
