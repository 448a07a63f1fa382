"""SFT data from wherever a user has it: JSONL or JSON files, a folder of them, a ``datasets.save_to_disk``
folder (what ``toolmaster synth`` writes) or a hub dataset id; rows in the OpenAI chat format (``messages``
with ``tool_calls`` and ``tool`` messages, a ``tools`` list) or ShareGPT (``conversations`` of from/value).

Every row becomes an ``SFTRow`` (OpenAI-shaped messages and tools) or a ``BadRow`` naming its file, line and
reason; nothing that cannot be rendered exactly is trained.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from toolmaster.config_base import ConfigError
from toolmaster.protocol.template import TemplateError, call_arguments

ROLES = ("system", "user", "assistant", "tool")
# ShareGPT's speaker names (FastChat, LLaMA-Factory): function_call holds a {"name", "arguments"} JSON object
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "observation": "tool", "tool": "tool", "function_response": "tool", "function_call": "function_call"}


@dataclass
class SFTRow:
    messages: list[dict]
    tools: list[dict]
    where: str  # file:line (or dataset:index)


@dataclass
class BadRow:
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def _tools(raw, where: str) -> list[dict]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as err:
            raise TemplateError(f"'tools' is not JSON ({err})") from err
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise TemplateError("'tools' must be a list of tool objects")
    for t in raw:
        fn = t.get("function", t)
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise TemplateError("a tool without a name")
    return raw


def _openai_messages(raw) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise TemplateError("empty conversation")
    out, call_ids = [], set()
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise TemplateError(f"message {i} is not an object")
        role = m.get("role")
        if role == "developer":
            role = "system"
        if role not in ROLES:
            raise TemplateError(f"message {i}: unknown role {role!r}")
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content is not None and not isinstance(content, str):
            raise TemplateError(f"message {i}: content must be text or null")
        msg = {"role": role, "content": content}
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise TemplateError(f"message {i}: a tool call without a function name")
                if not call.get("id"):
                    raise TemplateError(f"message {i}: a tool call without an id")
                try:
                    arguments = call_arguments(fn.get("arguments"))
                except TemplateError as err:
                    raise TemplateError(f"message {i}: {err}") from err
                calls.append({"id": call["id"], "type": "function",
                              "function": {"name": fn["name"], "arguments": arguments}})
            msg["tool_calls"] = calls
            call_ids = {c["id"] for c in calls}
        elif role == "assistant":
            call_ids = set()  # tool messages after it answer inline (<tool_call> text) calls: no ids
        elif role == "tool" and m.get("tool_call_id") is not None:
            if m["tool_call_id"] not in call_ids:
                raise TemplateError(f"message {i}: tool_call_id {m['tool_call_id']!r} answers no tool call of the "
                                    "assistant turn before it")
            msg["tool_call_id"] = m["tool_call_id"]
        elif role == "tool" and call_ids:
            raise TemplateError(f"message {i}: a tool result without the tool_call_id it answers")
        if content is None and not msg.get("tool_calls"):
            raise TemplateError(f"message {i}: no content")
        out.append(msg)
    if not any(m["role"] == "assistant" for m in out):
        raise TemplateError("no assistant turn to train on")
    return out


def _sharegpt_messages(raw) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise TemplateError("empty conversation")
    messages, n = [], 0
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise TemplateError(f"turn {i} has no text 'value'")
        role = SHAREGPT_ROLES.get(turn.get("from"))
        if role is None:
            raise TemplateError(f"turn {i}: unknown speaker {turn.get('from')!r}")
        if role == "function_call":
            try:
                call = json.loads(turn["value"])
            except ValueError as err:
                raise TemplateError(f"turn {i}: function_call is not JSON") from err
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise TemplateError(f"turn {i}: function_call names no function")
            n += 1
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{n}", "type": "function",
                 "function": {"name": call["name"], "arguments": call.get("arguments", {})}}]})
        elif role == "tool" and messages and messages[-1].get("tool_calls"):
            messages.append({"role": "tool", "content": turn["value"],
                             "tool_call_id": messages[-1]["tool_calls"][-1]["id"]})
        else:
            messages.append({"role": role, "content": turn["value"]})
    return _openai_messages(messages)


def parse_row(row, where: str) -> SFTRow | BadRow:
    """One row in either format (``toolmaster synth``'s own rows are OpenAI-format rows)."""
    if not isinstance(row, dict):
        return BadRow(where, "not a JSON object")
    try:
        if "messages" in row:
            messages = _openai_messages(row["messages"])
        elif "conversations" in row:
            messages = _sharegpt_messages(row["conversations"])
        else:
            return BadRow(where, "neither 'messages' (OpenAI chat format) nor 'conversations' (ShareGPT)")
        return SFTRow(messages, _tools(row.get("tools"), where), where)
    except TemplateError as err:
        return BadRow(where, str(err))


def _file_rows(path: Path) -> Iterator[tuple[object, str]]:
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line), f"{path}:{n}"
                except ValueError as err:
                    yield BadRow(f"{path}:{n}", f"not JSON ({err.msg})"), f"{path}:{n}"
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ConfigError(f"sft data {path}: not a JSON file ({err})") from err
        if not isinstance(data, list):
            raise ConfigError(f"sft data {path}: a JSON file must hold a list of rows")
        for n, row in enumerate(data):
            yield row, f"{path}[{n}]"


def _dataset_rows(dataset, name: str) -> Iterator[tuple[object, str]]:
    for n, row in enumerate(dataset):
        yield row, f"{name}[{n}]"


def _is_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~"))


def read_rows(source: str, hub_split: str = "train") -> Iterator[tuple[object, str]]:
    """Raw rows and where each came from. A file that is neither JSONL nor JSON, or a path that does not
    exist and is no hub id, is a ConfigError."""
    path = Path(source)
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            import datasets

            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                loaded = loaded[hub_split] if hub_split in loaded else next(iter(loaded.values()))
            yield from _dataset_rows(loaded, str(path))
            return
        files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json") and p.is_file())
        if not files:
            raise ConfigError(f"sft data {source!r}: the folder holds no .jsonl or .json file and no saved dataset")
        for f in files:
            yield from _file_rows(f)
    elif path.is_file():
        if path.suffix not in (".jsonl", ".json"):
            raise ConfigError(f"sft data {source!r}: not a .jsonl or .json file (nor a dataset folder)")
        yield from _file_rows(path)
    elif _is_hub_id(source):
        import datasets

        try:
            loaded = datasets.load_dataset(source, split=hub_split)
        except Exception as err:  # noqa: BLE001 — any hub or cache failure is the user's setting to fix
            raise ConfigError(f"sft data {source!r}: not a local path, and the hub dataset could not be loaded "
                              f"({type(err).__name__}: {str(err)[:200]})") from err
        yield from _dataset_rows(loaded, source)
    else:
        raise ConfigError(f"sft data {source!r}: no such file or folder (nor a hub dataset id like org/name)")


def load_rows(source: str) -> tuple[list[SFTRow], list[BadRow]]:
    good, bad = [], []
    for row, where in read_rows(source):
        parsed = row if isinstance(row, BadRow) else parse_row(row, where)
        (bad if isinstance(parsed, BadRow) else good).append(parsed)
    return good, bad
