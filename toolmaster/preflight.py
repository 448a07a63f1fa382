"""``toolmaster check``: every pre-launch check of a config, run where the config is written (a laptop) for a
cluster it will run on. Each check says ok, failed, or "not checkable here" (what depends on the machine that
runs it: CUDA, NCCL, OS isolation layers), which ``--local`` turns into real checks of this machine.

The model checks read only its config.json and tokenizer, so a config can be checked before its weights
are downloaded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from toolmaster.config_base import ConfigError

OK, FAILED, NOT_HERE = "ok", "FAILED", "not checkable here"


@dataclass
class Check:
    name: str
    status: str
    detail: str


def _model(cfg, command: str) -> tuple[list[Check], object | None]:
    """The model checks, and its shape (None when its config cannot be read)."""
    from transformers import AutoTokenizer

    from toolmaster.models.hub import resolve_model
    from toolmaster.plan import ModelShape, model_config_path
    from toolmaster.protocol.template import chat_format

    path = cfg.eval.model if command == "eval" else cfg.model.path
    if not path:
        if command == "quickstart":
            return [Check("model", OK, "the quickstart builds its tiny model")], None
        return [Check("model", FAILED, f"{command} needs a model: --model DIR or model.path=DIR")], None
    path = resolve_model(path, "model.path", weights=False)
    try:
        config = json.loads(model_config_path(path).read_text())
        shape = ModelShape.from_config(config)
    except (ConfigError, OSError, ValueError) as err:
        return [Check("model config", FAILED, str(err))], None
    out = [Check("model config", OK, f"{shape.params / 1e9:.2f} B parameters, {shape.layers} layers")]
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        return out + [Check("tokenizer", FAILED, f"{path}: {err}")], shape
    vocab = config.get("vocab_size")
    if vocab is not None and len(tokenizer) > vocab:
        out.append(Check("tokenizer", FAILED, f"{len(tokenizer)} tokens, more than the model's vocab_size {vocab}"))
    else:
        out.append(Check("tokenizer", OK, f"{len(tokenizer)} tokens within vocab_size {vocab}"))
    try:
        chat = chat_format(tokenizer, path)
        out.append(Check("chat template", OK, f"{type(chat).__name__}, turns end with {chat.end_of_turn!r}"))
    except ValueError as err:
        out.append(Check("chat template", FAILED, str(err)))
    weights = any(Path(path).glob("*.safetensors")) or any(Path(path).glob("pytorch_model*.bin"))
    out.append(Check("model weights", OK if weights else NOT_HERE,
                     "present" if weights else "no weight files in this folder (the checks above read only the "
                     "config and the tokenizer)"))
    return out, shape


def _environment(cfg, command: str) -> list[Check]:
    from toolmaster.envs import make_env

    try:
        env = make_env(cfg.env)
    except (ValueError, OSError) as err:  # a data path that does not resolve, a file that does not parse
        return [Check("environment", FAILED, f"env.name = {cfg.env.name!r}: {err}")]
    out = []
    needed = {"eval": [("eval.split", cfg.eval.split)]}.get(command, [])
    if command == "grpo":
        needed = [("the train split", "train")] + ([("grpo.eval_split", cfg.grpo.eval_split)]
                                                    if cfg.grpo.eval_every else [])
    for setting, split in needed:
        if split not in env.splits:
            out.append(Check(f"split {split}", FAILED, f"{setting}: {env.name} has no split {split!r} "
                                                       f"(splits: {list(env.splits)})"))
            continue
        size = env.size(split)
        if size == 0:
            hint = " (set env.toolhop.test_fraction below 1)" if env.name == "toolhop" and split == "train" else ""
            out.append(Check(f"split {split}", FAILED, f"{setting}: {env.name}'s {split} split is empty{hint}"))
        else:
            out.append(Check(f"split {split}", OK, f"{'generated' if size is None else size} tasks"))
    if command == "grpo" and cfg.grpo.eval_every and cfg.grpo.eval_split == "train":
        out.append(Check("held-out evaluation", FAILED, "grpo.eval_split = 'train': it would evaluate on the items "
                         "it trains on"))
    return out or [Check("environment", OK, f"{env.name}")]


def _sft_data(cfg) -> list[Check]:
    from toolmaster.trainer.sft_data import load_rows

    if not cfg.sft.data:
        return [Check("sft data", FAILED, "sft needs data: --data or sft.data")]
    try:
        good, bad = load_rows(cfg.sft.data)
    except ConfigError as err:
        return [Check("sft data", FAILED, str(err))]
    share = len(bad) / max(len(good) + len(bad), 1)
    status = OK if good and share <= cfg.sft.max_bad_fraction else FAILED
    first = f"; first: {bad[0]}" if bad else ""
    return [Check("sft data", status, f"{len(good)} usable rows, {len(bad)} malformed{first} (lengths: "
                                      "`toolmaster data check`)")]


def _plan(cfg, shape) -> list[Check]:
    from toolmaster.plan import verdicts

    out = [Check(f"memory plan: {role}", OK if fits else FAILED, reason)
           for role, (fits, reason) in verdicts(cfg, shape).items()]
    return out or [Check("memory plan", NOT_HERE, "no GPU memory declared (learner/rollout.gpu_memory_gb)")]


def _machine(cfg, local: bool) -> list[Check]:
    """CUDA, NCCL and OS isolation belong to the machine that runs the config."""
    from toolmaster.config import check_runtime
    from toolmaster.tools.sandbox import check_isolation

    needs_cuda = (cfg.rollout.weight_transport == "nccl" or cfg.learner.backend == "nccl"
                  or cfg.learner.num_gpus_per_rank > 0 or cfg.rollout.num_gpus_per_worker > 0)
    if not local:
        return [Check("CUDA / NCCL", NOT_HERE if needs_cuda else OK,
                      "GPUs and NCCL are checked on the machine that runs it (--local checks this one)" if needs_cuda
                      else "CPU only"),
                Check("sandbox isolation", NOT_HERE, "OS isolation layers are checked where the tools run (--local)")]
    out = []
    try:
        check_runtime(cfg)
        out.append(Check("CUDA / NCCL", OK, "available here" if needs_cuda else "CPU only"))
    except ConfigError as err:
        out.append(Check("CUDA / NCCL", FAILED, str(err)))
    try:
        layers = check_isolation(cfg.sandbox)
        out.append(Check("sandbox isolation", OK, json.dumps(layers)))
    except ConfigError as err:
        out.append(Check("sandbox isolation", FAILED, str(err)))
    return out


def run_checks(cfg, command: str = "grpo", local: bool = False) -> list[Check]:
    """Every pre-launch check of ``cfg`` for ``command`` (grpo, sft, eval or quickstart); never starts Ray."""
    checks, shape = _model(cfg, command)
    if command in ("grpo", "eval"):
        checks += _environment(cfg, command)
    if command == "sft":
        checks += _sft_data(cfg)
    if command in ("grpo", "sft") and shape is not None:  # a model whose config could not be read is reported
        checks += _plan(cfg, shape)
    return checks + _machine(cfg, local)
