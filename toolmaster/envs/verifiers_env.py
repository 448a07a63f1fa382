"""A verifiers (v1) environment as the environment: ``env.name=verifiers env.verifiers.id=NAME``.

Each episode is one verifiers rollout (``Env.run_slot``) whose model calls go to the rollout worker's
recording endpoint (rollout/endpoint.py), so the trajectory is the tokens the policy sampled, exactly as
for a custom agent (envs/agent.py). The reward, correctness and metrics come from the verifiers trace.

Offline by construction: the seat's harness defaults to ``null`` (verifiers' own chat program) in the
``subprocess`` runtime (never the hosted Prime runtime), and the client is a plain chat client pointed at
the worker, with an API-key variable of our own (so no Prime CLI config is read). The null harness
prepares its chat program with ``uv`` once per machine (``uv`` comes with the ``[verifiers]`` extra; the
program's dependencies are fetched from the package index the first time).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from toolmaster.envs.agent import EndpointEnv

KEY_VAR = "TOOLMASTER_VERIFIERS_KEY"  # the endpoint ignores it; verifiers needs a variable to read


def _vf():
    try:
        import verifiers.v1 as vf
    except ImportError as err:
        raise ValueError("env.name=verifiers needs the verifiers extra: bash scripts/install.sh --with-verifiers "
                         f"(or pip install -e '.[verifiers]'); import failed: {err}") from None
    return vf


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _refuse_host_code(cfg) -> None:
    """A harness that runs model-written code (bash, coding agents) in the subprocess runtime would run it on
    the training host, outside the tool sandbox (tools/isolation.py): refused unless asked for."""
    from verifiers.v1.utils.loaders import harness_class

    try:
        executes = harness_class(cfg.harness).EXECUTES_CODE
    except Exception as err:  # noqa: BLE001 — an unknown harness id is a configuration error
        raise ValueError(f"env.verifiers.harness: cannot load {cfg.harness!r} ({type(err).__name__}: {err})") from None
    if executes and cfg.runtime == "subprocess" and not cfg.allow_host_code:
        raise ValueError(f"env.verifiers.harness {cfg.harness!r} runs model-written code, and runtime 'subprocess' "
                         "would run it on this host unsandboxed; use a container runtime (env.verifiers.runtime="
                         "docker) or set env.verifiers.allow_host_code=true")


class VerifiersEnv(EndpointEnv):
    name = "verifiers"

    def __init__(self, cfg, max_turns: int):
        if not cfg.id:
            raise ValueError("env.verifiers.id must name an installed verifiers taskset (e.g. env.verifiers.id=wordle)")
        vf = _vf()
        self.cfg = cfg
        _refuse_host_code(cfg)
        env_config = _merge({"taskset": {"id": cfg.id, **cfg.args},
                             "agent": {"harness": {"id": cfg.harness}, "runtime": {"type": cfg.runtime},
                                       "max_turns": max_turns}}, cfg.config)
        try:
            self.vf_env = vf.load_environment(vf.resolve_env_config(env_config))
            vf_tasks = list(self.vf_env.taskset.take(cfg.max_tasks))
        except Exception as err:  # noqa: BLE001 — any loader failure is a configuration error here
            raise ValueError(f"env.verifiers: cannot load {cfg.id!r} ({type(err).__name__}: {err})") from None
        if not vf_tasks:
            raise ValueError(f"env.verifiers: taskset {cfg.id!r} has no tasks")
        self._vf_tasks = {task.data.idx: task for task in vf_tasks}
        self._set_rows([{"idx": task.data.idx, "prompt": task.data.prompt_text[:400]} for task in vf_tasks],
                       cfg.test_fraction)
        self._serving: contextlib.AsyncExitStack | None = None
        self._serving_lock: asyncio.Lock | None = None
        # the null harness looks for uv on PATH; the extra installs it beside this interpreter
        bin_dir = os.path.dirname(sys.executable)
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        os.environ.setdefault(KEY_VAR, "toolmaster")

    async def _ensure_serving(self) -> None:
        """Enter the environment's serving context (interception server, shared tool servers) once per
        process, on the worker's event loop: concurrent episodes share it, as in ``vf-eval``."""
        if self._serving_lock is None:
            self._serving_lock = asyncio.Lock()
        async with self._serving_lock:
            if self._serving is None:
                stack = contextlib.AsyncExitStack()
                await stack.enter_async_context(self.vf_env.serving())
                self._serving = stack

    async def agent(self, task: dict, client, model: str) -> dict:
        """One verifiers rollout of ``task`` against ``client``'s endpoint (the session is in its base URL)."""
        vf = _vf()
        from verifiers.v1.env import RunSlot

        await self._ensure_serving()
        ctx = vf.ModelContext(model=model, client=vf.EvalClientConfig(base_url=str(client.base_url).rstrip("/"),
                                                                      api_key_var=KEY_VAR),
                              sampling=vf.SamplingConfig())  # the endpoint applies the episode's sampling
        episode = await self.vf_env.run_slot(RunSlot(self._vf_tasks[task["idx"]]), ctx)
        if episode.errors or not episode.ok:
            raise RuntimeError(f"verifiers rollout failed: {[str(e) for e in episode.errors][:3]}")
        traces = [t for t in episode.traces if t.agent.trainable]
        if len(traces) != 1:
            raise RuntimeError(f"verifiers episode has {len(traces)} trainable traces; env.name=verifiers trains "
                               "single-seat environments (one trace per episode)")
        trace = traces[0]
        metrics = {k: float(v) for k, v in (trace.metrics or {}).items() if isinstance(v, (int, float))}
        metrics.update({f"reward/{k}": float(r.score) for k, r in trace.rewards.items() if r is not None})
        return {"reward": float(trace.reward), "correct": float(trace.reward) >= self.cfg.success_threshold,
                "metrics": metrics}
