"""The ``toolmaster`` command: quickstart, tiny-model, synth, sft, grpo, eval, data, check, plan, serve-tools,
serve-model.

Every command takes ``--config FILE`` and trailing dotted ``key=value`` overrides; its own flags are
shorthands for overrides, applied first, so an explicit ``key=value`` wins (``toolmaster eval compare BEFORE
AFTER`` only reads two finished evaluations: it takes no config).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from toolmaster.config import ConfigError, load_config
from toolmaster.ray_utils import ActorFailure

ENVS = ["toolworld", "toolhop", "stabletoolbench", "tmdb", "codebook", "agent", "verifiers"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. env.max_turns=6")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolmaster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tiny-model", help="build the tiny Qwen2 model and its local tokenizer, or (--tokenizer) "
                       "a small random-weight model on a real tokenizer")
    p.add_argument("--out", required=True)
    p.add_argument("--tie-embeddings", action="store_true")
    p.add_argument("--tokenizer", dest="real_tokenizer", metavar="DIR",
                   help="a real model's tokenizer folder (e.g. Qwen2.5-Instruct's): its vocabulary, special tokens "
                        "and chat template, with random weights of model.* shape")
    _common(p)

    p = sub.add_parser("synth", help="synthesize teacher trajectories (a datasets dataset + summary.json)")
    p.add_argument("--env", default=None, choices=ENVS)
    p.add_argument("--data", help="benchmark data file or folder (as laid out in ../shared/data)")
    p.add_argument("--teacher", choices=["scripted", "openai"])
    p.add_argument("--base-url", help="OpenAI-compatible endpoint of the teacher, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", help="model name the teacher endpoint serves")
    p.add_argument("--tool-server", help="URL of a running tool server (default: one is started when needed)")
    p.add_argument("--num-tasks", type=int)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int)
    p.add_argument("--no-trial", action="store_true", help="write the same tasks without the trial phase")
    p.add_argument("--tokenizer", help="model dir whose tokenizer measures trajectory length")
    _common(p)

    p = sub.add_parser("eval", help="evaluate a policy; writes OUT/report.json (`toolmaster eval compare BEFORE "
                       "AFTER`: two evaluations, paired)", epilog=COMPARE_USAGE)
    p.add_argument("--env", choices=ENVS)
    p.add_argument("--data", help="benchmark data file or folder (as laid out in ../shared/data)")
    p.add_argument("--tool-server", help="URL of a running tool server (default: one is started when needed)")
    p.add_argument("--policy", choices=["model", "oracle", "empty"])
    p.add_argument("--model", help="model directory for --policy model")
    p.add_argument("--split", choices=["train", "val", "test", "test_ood"])
    p.add_argument("--limit", type=int, help="evaluate the first N items only")
    p.add_argument("--reach", type=int, metavar="N", help="--policy model: also sample each greedy failure N times "
                   "with the training sampler (rollout.generation, one GRPO group): the failures GRPO can learn from")
    p.add_argument("--out", required=True)
    _common(p)

    for name, text in (("sft", "SFT on teacher trajectories (Ray + DeepSpeed learner group)"),
                       ("grpo", "GRPO with vLLM rollout workers and the real tools (Ray + DeepSpeed)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--model", help="model folder or hub id (org/name[@revision]) to start from (default: "
                       "model.path)")
        p.add_argument("--tiny", action="store_true", help="no model of your own: build the toy tiny model (1 M "
                       "parameters, its own tokenizer) into RUN_DIR/base_model and start from it")
        if name == "sft":
            p.add_argument("--data", dest="sft_data", help="JSONL/JSON file or folder (OpenAI chat or ShareGPT rows), "
                           "a dataset written by `toolmaster synth`, or a hub dataset id")
        p.add_argument("--run-dir", help="run directory (metrics, plots, checkpoints)")
        p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
        _common(p)

    p = sub.add_parser("check", help="run every pre-launch check of a config and exit (splits, data, model config "
                       "and tokenizer, memory plan); never starts Ray")
    p.add_argument("--command", dest="for_command", default="grpo", choices=["grpo", "sft", "eval", "quickstart"],
                   help="the command the config is for (default grpo)")
    p.add_argument("--model", help="model folder or hub id (model.path; eval.model with --command eval)")
    p.add_argument("--local", action="store_true", help="also check this machine: CUDA and NCCL, sandbox isolation")
    _common(p)

    p = sub.add_parser("data", help="`toolmaster data check DATA --model M`: " + DATA_CHECK_USAGE)
    p = sub.add_parser("serve-tools", help="the StableToolBench-compatible tool server (POST /virtual)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    _common(p)

    p = sub.add_parser("serve-model", help="serve a checkpoint as an OpenAI-compatible endpoint (vLLM)")
    p.add_argument("model_dir", metavar="DIR")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--name", help="served model name (default: the folder name)")
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--dtype", default="auto")
    p.epilog = "Further arguments go to vLLM's server unchanged (e.g. --enforce-eager --kv-cache-memory-bytes N)."

    p = sub.add_parser("plan", help="per-GPU memory of learner ranks and rollout engines for a config (no weights "
                       "loaded); exit status 1 when a declared GPU memory does not fit")
    p.add_argument("--model-config", help="a model's config.json (default: model.path's, or configs/models/NAME.json)")
    _common(p)

    p = sub.add_parser("quickstart", help="tiny model → synthesis → evaluation on held-out toolworld tools")
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--no-trial", action="store_true")
    _common(p)
    p.set_defaults(config=str(QUICKSTART_RECIPE) if QUICKSTART_RECIPE.is_file() else None)
    return parser


COMPARE_USAGE = ("toolmaster eval compare BEFORE AFTER: two evaluations of the same tasks (report.json files or "
                 "their --out folders), paired task by task (fixed / broken, sign test, 95% CI) and per task group")


def _compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toolmaster eval compare", description=COMPARE_USAGE)
    p.add_argument("before", metavar="BEFORE", help="the first evaluation: its report.json or --out folder")
    p.add_argument("after", metavar="AFTER", help="the second evaluation, on the same tasks")
    return p


def _compare(argv: list[str]) -> int:
    """``toolmaster eval compare``: a bad or missing report is one line on stderr and exit status 2."""
    from toolmaster.evaluation.compare import comparison_lines, load_report

    args = _compare_parser().parse_args(argv)
    try:
        lines = comparison_lines(load_report(args.before), load_report(args.after))
    except ValueError as err:
        print(f"toolmaster eval compare: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


DATA_CHECK_USAGE = ("check SFT data against a model's chat template before training: rows, lengths in the "
                    "model's tokens, and every row that cannot be used, with its file, line and reason")


def _data_check(argv: list[str]) -> int:
    """``toolmaster data check FILE --model M``: exit 0 when every row is usable, 1 when some are not, 2 when
    the data or the model cannot be read."""
    import statistics

    from transformers import AutoTokenizer

    from toolmaster.trainer.sft import drop_summary, prepare_examples

    p = argparse.ArgumentParser(prog="toolmaster data check", description=DATA_CHECK_USAGE)
    p.add_argument("data", metavar="DATA", help="JSONL/JSON file or folder, saved dataset, or hub dataset id")
    p.add_argument("--model", required=True, help="model folder or hub id whose tokenizer and chat template to use")
    p.add_argument("--max-tokens", type=int, default=None, help="longest usable row (default: sft.max_tokens)")
    p.add_argument("--show", type=int, default=10, help="bad rows to list")
    args = p.parse_args(argv)
    max_tokens = args.max_tokens or load_config(None, []).sft.max_tokens
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    except (OSError, ValueError) as err:
        print(f"toolmaster data check: --model {args.model!r}: no tokenizer there ({err})", file=sys.stderr)
        return 2
    try:
        examples, bad = prepare_examples(args.data, tokenizer, max_tokens)
    except ConfigError as err:
        print(f"toolmaster data check: {err}", file=sys.stderr)
        return 2
    lengths = sorted(len(ids) for ids, _ in examples)
    print(f"{args.data}: {len(examples) + len(bad)} rows, {len(examples)} usable, {len(bad)} not "
          f"({drop_summary(bad)}; max_tokens {max_tokens})")
    if lengths:
        trained = sum(sum(mask) for _, mask in examples)
        print(f"tokens per usable row ({args.model}): min {lengths[0]}, median {statistics.median(lengths):g}, "
              f"p95 {lengths[int(0.95 * (len(lengths) - 1))]}, max {lengths[-1]}; assistant (trained) tokens "
              f"{trained / sum(lengths):.1%}")
    for b in bad[:args.show]:
        print(f"  {b}")
    return 1 if bad else 0


# the quickstart's recipe (SFT budget, GRPO settings); --config replaces it
QUICKSTART_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def _flag_overrides(args) -> list[str]:
    pairs = {
        "env": "env.name", "num_tasks": "synth.num_tasks", "seed": "synth.seed", "teacher": "synth.teacher",
        "base_url": "synth.endpoint.base_url", "policy": "eval.policy", "model": "eval.model", "split": "eval.split",
        "limit": "eval.num_tasks", "sft_data": "sft.data", "run_dir": "run_dir", "tool_server": "env.tool_server.url",
    }
    if args.command == "serve-tools":
        pairs.update(host="env.tool_server.host", port="env.tool_server.port")
    if args.command in ("sft", "grpo") or (args.command == "check" and args.for_command != "eval"):
        pairs["model"] = "model.path"
    if args.command == "synth":
        pairs["model"] = "synth.endpoint.model"
    out = [f"{key}={getattr(args, attr)}" for attr, key in pairs.items() if getattr(args, attr, None) is not None]
    if getattr(args, "no_trial", False):
        out.append("synth.trial=false")
    return out


# CPU-friendly defaults for the engines (a user's own settings win): one BLAS thread per process, a small
# vLLM CPU KV cache, offline wandb. Hub access is the user's to turn off (HF_HUB_OFFLINE=1).
_ENV_DEFAULTS = {"OMP_NUM_THREADS": "1",
                 "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false", "VLLM_LOGGING_LEVEL": "WARNING"}


def _run(args, cfg) -> int:
    from toolmaster import console

    if args.command == "tiny-model" and args.real_tokenizer:
        from toolmaster.models.real_shape import build_real_shape_model
        with console.status("building a random-weight model on " + args.real_tokenizer):
            facts = build_real_shape_model(cfg, args.out, args.real_tokenizer,
                                           tie_embeddings=args.tie_embeddings or None)
        console.print_json("real-shape model written to " + args.out, facts)
    elif args.command == "tiny-model":
        from toolmaster.models.tiny import build_tiny_model
        with console.status("building the tiny model and training its tokenizer"):
            facts = build_tiny_model(cfg, args.out, tie_embeddings=args.tie_embeddings or None)
        console.print_json("tiny model written to " + args.out, facts)
    elif args.command == "synth":
        from toolmaster.teacher.synth import synthesize
        tokenizer = None
        if args.tokenizer:
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        with console.progress("synthesizing", cfg.synth.num_tasks) as advance:
            summary = synthesize(cfg, args.out, tokenizer, progress=advance)
        console.print_json("synthesis summary (" + args.out + "/summary.json)", summary)
    elif args.command == "eval":
        from toolmaster.evaluation.reach import evaluate_with_reach, reach_lines
        from toolmaster.evaluation.runner import evaluate
        if args.reach is not None and args.reach < 1:
            raise ConfigError(f"--reach {args.reach}: sample each failure at least once")
        with console.progress("episodes", 0) as advance:
            report = (evaluate_with_reach(cfg, args.out, args.reach, progress=advance) if args.reach
                      else evaluate(cfg, args.out, progress=advance))
        console.print_json("evaluation (" + args.out + "/report.json)",
                           {k: v for k, v in report.items() if k not in ("items", "reach")})
        if "reach" in report:
            print(f"greedy failures sampled {args.reach} times each (temperature "
                  f"{cfg.rollout.generation.temperature}): reachable = solved at least once")
            print("\n".join(reach_lines(report["reach"])))
    elif args.command in ("sft", "grpo"):
        model_dir = cfg.model.path
        if model_dir is None and not args.tiny:
            raise ConfigError(f"{args.command} needs a model: --model DIR or model.path=DIR (or --tiny for the toy "
                              "model the quickstart builds)")
        if model_dir is None:
            from toolmaster.models.tiny import build_tiny_model
            model_dir = str(Path(cfg.run_dir) / "base_model")
            if not Path(model_dir, "config.json").exists():
                with console.status("building the tiny model"):
                    build_tiny_model(cfg, model_dir)
        if args.command == "sft":
            from toolmaster.trainer.sft import train_sft
            if not cfg.sft.data:
                print("toolmaster: sft needs data: --data DIR or sft.data=DIR (see `toolmaster synth`)",
                      file=sys.stderr)
                return 2
            result = train_sft(cfg, model_dir, cfg.sft.data, resume=args.resume)
        else:
            from toolmaster.trainer.grpo import train_grpo
            result = train_grpo(cfg, model_dir, resume=args.resume)
        last = result["history"][-1] if result["history"] else {}
        console.print_json(f"{args.command} finished: {result['run_dir']}",
                           {k: v for k, v in last.items() if not isinstance(v, list)})
    elif args.command == "serve-tools":
        from toolmaster.toolserver.process import serve
        logging.getLogger("toolmaster.toolserver").setLevel(logging.INFO)  # backend hits and misses, per request
        server = cfg.env.tool_server
        print(f"tool server on http://{server.host}:{server.port} (backends: {', '.join(server.backends)})", flush=True)
        serve(server)
    elif args.command == "plan":
        import json

        from toolmaster.plan import ModelShape, model_config_path, render, verdicts
        path = model_config_path(cfg.model.path, args.model_config)
        shape = ModelShape.from_config(json.loads(path.read_text()))
        print(render(cfg, shape, str(path)))
        return 0 if all(fits for fits, _ in verdicts(cfg, shape).values()) else 1
    elif args.command == "quickstart":
        from toolmaster.quickstart import quickstart
        quickstart(cfg, args.out)
    elif args.command == "check":
        from toolmaster.preflight import FAILED, run_checks
        checks = run_checks(cfg, args.for_command, args.local)
        print(f"pre-launch checks for `toolmaster {args.for_command}`:")
        for c in checks:
            print(f"  [{c.status}] {c.name}: {c.detail}")
        failed = [c for c in checks if c.status == FAILED]
        print(f"{len(failed)} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks pass "
              "(or cannot be checked on this machine)")
        return 1 if failed else 0
    return 0


def main(argv: list[str] | None = None) -> int:
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(level=os.environ.get("TOOLMASTER_LOG", "WARNING"))
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["eval", "compare"]:  # a subcommand of eval: its positionals are not config overrides
        return _compare(argv[2:])
    if argv[:2] == ["data", "check"]:
        return _data_check(argv[2:])
    args, extra = _parser().parse_known_args(argv)
    if args.command == "serve-model":
        from toolmaster.llm.serve_model import server_command
        cmd = server_command(args.model_dir, host=args.host, port=args.port, name=args.name,
                             max_model_len=args.max_model_len, dtype=args.dtype, extra=extra)
        os.execv(cmd[0], cmd)  # the server replaces this process, so signals reach it directly
    if extra:
        _parser().error(f"unrecognized arguments: {' '.join(extra)}")
    # the toy model's settings lie beneath whatever the user sets: the defaults are a real model's
    base = None
    if args.command == "quickstart" or getattr(args, "tiny", False):
        from toolmaster.models.tiny import TINY_SETTINGS as base
    try:
        cfg = load_config(args.config, _flag_overrides(args) + list(args.overrides), base)
        if getattr(args, "data", None):  # the data belongs to whichever benchmark the config selects
            if cfg.env.name == "toolworld":
                raise ConfigError("toolworld is generated and takes no --data; choose --env "
                                  "toolhop|stabletoolbench|tmdb")
            cfg = load_config(args.config, _flag_overrides(args) + [f"env.{cfg.env.name}.data={args.data}"]
                              + list(args.overrides), base)
    except ConfigError as err:
        print(f"toolmaster: {err}", file=sys.stderr)
        return 2
    try:  # settings that pass the schema but cannot work (a missing model, a plan that does not fit)
        from toolmaster.models.hub import resolve_model

        # a hub id becomes one snapshot folder here, on the driver, before any actor starts
        weights = args.command not in ("plan", "check")  # these read only configs and tokenizers
        cfg.model.path = resolve_model(cfg.model.path, "--model (model.path)", weights)
        cfg.eval.model = resolve_model(cfg.eval.model, "--model (eval.model)", weights)
        return _run(args, cfg)
    except ConfigError as err:  # also a cluster that lacks the resources the config asks for
        print(f"toolmaster: {err}", file=sys.stderr)
        return 2
    except ActorFailure as err:  # an actor's own error and the last lines of its log
        print(f"toolmaster: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
