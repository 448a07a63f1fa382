"""Models named by a hub id (``Qwen/Qwen2.5-7B-Instruct``, optionally ``@revision``), resolved once, on the
driver, to one snapshot folder of the Hugging Face cache that every actor then loads.

Online, a missing or stale snapshot is downloaded; with ``HF_HUB_OFFLINE=1`` (the user's choice, never
forced here) only the cache is read. On a multi-node cluster the cache (``HF_HOME``) must be shared storage,
as the actors load the driver's snapshot folder.
"""
from __future__ import annotations

import re
from pathlib import Path

from toolmaster.config_base import ConfigError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


def is_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and not name.startswith((".", "/", "~"))


# what a memory plan or a pre-launch check reads: the configs and the tokenizer, not the weights
METADATA_FILES = ["*.json", "*.txt", "*.jinja", "*.model", "*.tiktoken"]


def resolve_model(name: str | None, setting: str = "--model", weights: bool = True) -> str | None:
    """A local model folder as it is; a hub id as its snapshot folder in the HF cache (``weights=False``:
    only its configs and tokenizer files are fetched)."""
    if not name or Path(name).exists() or not is_hub_id(name):
        return name
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, _, revision = name.partition("@")
    try:
        return snapshot_download(repo, revision=revision or None, allow_patterns=None if weights else METADATA_FILES)
    except LocalEntryNotFoundError as err:
        raise ConfigError(f"{setting} = {name!r}: not a local folder, and the hub model is not in the Hugging Face "
                          "cache (offline: HF_HUB_OFFLINE=1, or no network). Download it once online, e.g. "
                          f"`hf download {repo}`") from err
    except Exception as err:  # noqa: BLE001 — a wrong id, a gated repo, a network error: the setting to fix
        raise ConfigError(f"{setting} = {name!r}: the hub model could not be resolved "
                          f"({type(err).__name__}: {str(err)[:200]})") from err
