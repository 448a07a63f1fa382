"""One configuration schema, from YAML (plus dotted ``key=value`` overrides) to every component.

Every section forbids unknown keys, so a typo fails at load time instead of being silently ignored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from toolmaster.config_base import ConfigError, Section
from toolmaster.envs import make_env


class ModelConfig(Section):
    path: str | None = Field(None, description="model folder or hub id (org/name[@revision], resolved through the "
                             "Hugging Face cache); sft and grpo need one (the quickstart builds the tiny model)")
    tie_embeddings: bool = Field(True, description="tied: copying works for tokens rare in training data")
    hidden_size: int = Field(128, ge=32)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(512, ge=32)
    vocab_size: int = Field(1024, ge=512, description="BPE vocabulary trained locally")
    max_position_embeddings: int = Field(2048, ge=128)
    copy_pretrain_steps: int = Field(1500, ge=0, description="copy pre-training in the builder (0: none)")
    copy_max_gap: int = Field(0, ge=0, description="copy pre-training spans up to this many tokens between the "
                                                   "span and its copy (0: adjacent copies only)")
    seed: int = 0

    @model_validator(mode="after")
    def _head_dim(self) -> "ModelConfig":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.hidden_size // self.num_heads < 32:
            raise ValueError(
                f"head_dim {self.hidden_size // self.num_heads} < 32 (hidden_size/num_heads); vLLM CPU needs >= 32")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.num_kv_heads}")
        return self


class DifficultyLevel(Section):
    """Toolworld knobs one curriculum level sets (unset: the toolworld section's value)."""
    min_hops: int | None = Field(None, ge=1, le=6)
    max_hops: int | None = Field(None, ge=1, le=6)
    distractors: int | None = Field(None, ge=0, le=8)
    quirk_rate: float | None = Field(None, ge=0.0, le=1.0)


class CurriculumConfig(Section):
    """Toolworld difficulty driven by recent training success, kept inside [target_low, target_high]."""
    enabled: bool = Field(False, description="off: measured to lower held-out success 0.90 → 0.74-0.76 by "
                          "teaching early answers on two-hop tasks (docs/grpo.md, Curriculum)")
    target_low: float = Field(0.3, ge=0.0, le=1.0, description="recent success below this: one level easier")
    target_high: float = Field(0.7, ge=0.0, le=1.0, description="recent success above this: one level harder")
    window: int = Field(2, ge=1, description="steps of training success averaged for a decision")
    start_level: int = Field(1, ge=0, description="index into levels")
    levels: list[DifficultyLevel] = Field(
        default_factory=lambda: [DifficultyLevel(max_hops=1, distractors=0, quirk_rate=0.5),
                                 DifficultyLevel(max_hops=2, distractors=1, quirk_rate=0.8),
                                 DifficultyLevel(max_hops=2, distractors=2, quirk_rate=1.0),
                                 DifficultyLevel(max_hops=3, distractors=2, quirk_rate=1.0)],
        min_length=1, description="easiest first")

    @model_validator(mode="after")
    def _band(self) -> "CurriculumConfig":
        if self.target_low >= self.target_high:
            raise ValueError(f"target_low {self.target_low} must be below target_high {self.target_high}")
        if self.start_level >= len(self.levels):
            raise ValueError(f"start_level {self.start_level} is not an index of levels ({len(self.levels)} levels)")
        return self


class ToolworldConfig(Section):
    seed: int = 0
    min_hops: int = Field(1, ge=1, le=6)
    max_hops: int = Field(2, ge=1, le=6)
    distractors: int = Field(1, ge=0, le=8, description="extra tools in each task that the task does not need")
    quirk_rate: float = Field(0.8, ge=0.0, le=1.0, description="chance that a tool has a hidden argument rule")
    entities_per_tool: int = Field(12, ge=2)
    eval_tasks: int = Field(50, ge=1, description="tasks per evaluation when no limit is given (toolworld is "
                            "unlimited)")
    curriculum: CurriculumConfig = CurriculumConfig()

    @model_validator(mode="after")
    def _hops(self) -> "ToolworldConfig":
        if self.min_hops > self.max_hops:
            raise ValueError(f"min_hops {self.min_hops} > max_hops {self.max_hops}")
        return self


class ToolHopConfig(Section):
    data: str = "../shared/data/toolhop/toolhop_100.jsonl"
    test_fraction: float = Field(1.0, ge=0.0, le=1.0, description="items from the end of the file used as test")


class EndpointConfig(Section):
    """An OpenAI-compatible chat endpoint: a vLLM server (`toolmaster serve-model`), a hosted API."""
    base_url: str | None = Field(None, description="e.g. http://127.0.0.1:8000/v1; None: not configured")
    model: str = Field("default", description="model name the endpoint serves")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key ('EMPTY' if unset)")
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(512, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0)


class JudgeConfig(EndpointConfig):
    runs: int | None = Field(None, ge=1, description="judgments per answer, averaged; None: 3 with StableToolBench's "
                             "evaluator (run_pass_rate.sh --evaluate_times 3), else 1")
    stabletoolbench_dir: str | None = Field(None, description="a StableToolBench checkout: SoPR (and SoWR) follow its "
                                            "toolbench/tooleval evaluator, templates read from there; None: "
                                            "ToolMaster's own judge prompt (not comparable with its tables)")
    evaluator: str = Field("tooleval_gpt-3.5-turbo_default", description="the evaluator folder under "
                           "toolbench/tooleval/evaluators (StableToolBench's default)")
    reference_answers: str | None = Field(None, description="SoWR: the reference model's converted answers "
                                          "(a folder of <group>.json, or one such file); None: no SoWR")
    preference_rounds: int = Field(3, ge=1, description="SoWR rounds per query (run_preference.sh --evaluate_times 3)")


class SimulatorEndpointConfig(EndpointConfig):
    """The API simulator's endpoint; sampling as StableToolBench's MirrorAPI server (temperature 0.1 in its
    server/config_mirrorapi_cache.yml, max_tokens 2048 in server/main_mirrorapi_cache.py)."""
    temperature: float = Field(0.1, ge=0.0)
    max_tokens: int = Field(2048, ge=1)


class ToolServerConfig(Section):
    """The StableToolBench-compatible tool server (`toolmaster serve-tools`) and how environments reach it."""
    url: str | None = Field(None, description="a running server; None: eval starts one with these settings")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0: any free port")
    backends: list[Literal["cache", "simulator", "fallback"]] = Field(
        ["fallback"], min_length=1,
        description="tried in this order until one answers, e.g. [cache, simulator, fallback]")
    cache_dir: str | None = Field(None, description="StableToolBench cache layout "
                                  "<dir>/<Category>/<tool>_for_<Category>/<api>.json")
    write_back: bool = Field(True, description="store simulator responses in the cache")
    docs: list[str] = Field(
        ["../shared/data/stabletoolbench/test_instruction", "../shared/data/restbench/tmdb_oas.json"],
        description="API documents: StableToolBench query files/folders and OpenAPI specs")
    simulator: SimulatorEndpointConfig = SimulatorEndpointConfig()
    simulator_seed: int | None = Field(42, description="the seed sent with each simulator request (StableToolBench "
                                       "sends 42); None: none sent")
    simulator_format: Literal["auto", "mirrorapi", "generic"] = Field(
        "auto", description="mirrorapi: exactly the messages of StableToolBench's server/main_mirrorapi_cache.py "
        "(needs stabletoolbench_dir and tools_dir); generic: this project's prompt (any API document, e.g. "
        "OpenAPI); auto: mirrorapi when stabletoolbench_dir is set")
    stabletoolbench_dir: str | None = Field(None, description="your StableToolBench checkout: the MirrorAPI "
                                            "system prompt is read from its server/system_prompts.py at run time")
    tools_dir: str | None = Field(None, description="a ToolEnv2404-style tools folder <dir>/<Category>/<tool>.json "
                                  "(tool_description, api_list): the MirrorAPI simulator's API docs, also "
                                  "served as documents")
    api_keys: list[str] = Field(default_factory=list, description="accepted keys (body toolbench_key or Bearer); "
                                "empty: open")
    key: str = Field("", description="the key environments send")
    max_concurrency: int = Field(32, ge=1, description="requests answered at once; more wait")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="larger request bodies are a 413")
    max_tool_input_chars: int = Field(65536, ge=16, description="a larger tool_input (as JSON) is a 413")
    timeout_s: float = Field(30.0, gt=0, description="client timeout per call")
    client_max_connections: int = Field(256, ge=1, description="connections each process's pooled client keeps "
                                        "to the server; calls beyond wait for one")

    @model_validator(mode="after")
    def _backends_configured(self) -> "ToolServerConfig":
        if "cache" in self.backends and not self.cache_dir:
            raise ValueError("backends lists 'cache' but cache_dir is not set")
        if "simulator" in self.backends and not self.simulator.base_url:
            raise ValueError("backends lists 'simulator' but simulator.base_url is not set")
        if self.simulator_format == "auto":
            self.simulator_format = "mirrorapi" if self.stabletoolbench_dir else "generic"
        if "simulator" in self.backends and self.simulator_format == "mirrorapi" and not (
                self.stabletoolbench_dir and self.tools_dir):
            raise ValueError("simulator_format 'mirrorapi' needs stabletoolbench_dir (your StableToolBench "
                             "checkout, for its system prompt) and tools_dir (the tools folder); or "
                             "simulator_format=generic")
        return self


class StableToolBenchConfig(Section):
    data: str = Field("../shared/data/stabletoolbench/test_instruction",
                      description="the benchmark's test queries: the test split unless queries or test_queries "
                      "gives one; never trained on (a training query with one of their ids is refused)")
    groups: list[str] = Field(default_factory=list, description="files of data, e.g. [G1_instruction]; empty: all")
    queries: str | None = Field(None, description="your ToolBench query file or folder (query, query_id, api_list, "
                                "relevant APIs), split into train and test by test_fraction and seed")
    test_fraction: float = Field(0.2, ge=0.0, le=1.0, description="share of queries held out as the test split")
    seed: int = Field(0, description="the shuffle that splits queries")
    train_queries: str | None = Field(None, description="your own train split (file or folder); its test split is "
                                      "test_queries, else data")
    test_queries: str | None = Field(None, description="your own test split (file or folder), with train_queries")
    max_observation_length: int | None = Field(
        1024, ge=1, description="tool responses longer than this are cut, with '...' appended, as StableToolBench's "
        "inference does (its --max_observation_length, 1024 in qa_pipeline.py and its run scripts); None: not cut")

    @model_validator(mode="after")
    def _one_split_source(self) -> "StableToolBenchConfig":
        if self.queries and (self.train_queries or self.test_queries):
            raise ValueError("queries is split into train and test by test_fraction; train_queries/test_queries "
                             "give your own split: set one or the other")
        if self.test_queries and not self.train_queries:
            raise ValueError("test_queries is the test split of your own split: set train_queries too (or "
                             "data, for a test split alone)")
        return self


class TMDBConfig(Section):
    data: str = "../shared/data/restbench/tmdb.json"
    spec: str = "../shared/data/restbench/tmdb_oas.json"
    api_key_env: str = Field("TMDB_API_KEY", description="set: tools call the live TMDB API; unset: the tool server")
    base_url: str = "https://api.themoviedb.org/3"


class CodebookConfig(Section):
    """The known-optimum sanity environment (envs/codebook.py)."""
    seed: int = 0
    num_codes: int = Field(4, ge=2, le=50, description="K coded answers listed per task; one is rewarded")


class AgentEnvConfig(Section):
    """Your own agent as the environment (envs/agent.py): ``async def entry(task, client, model)``."""
    entry: str | None = Field(None, description="package.module:function, an async function(task: dict, client: "
                              "openai.AsyncOpenAI, model: str) -> float | dict with reward [, correct, metrics]")
    tasks: str | None = Field(None, description="a JSONL file, one task (any JSON object) per line")
    test_fraction: float = Field(0.2, ge=0.0, le=1.0, description="the last this share of tasks is the test split")
    model_name: str = Field("policy", description="the model name the endpoint serves")
    timeout_s: float = Field(600.0, gt=0, description="an agent episode running longer fails (agent_error)")


class VerifiersEnvConfig(Section):
    """A verifiers (v1) taskset as the environment (envs/verifiers_env.py; needs the ``[verifiers]`` extra)."""
    id: str | None = Field(None, description="the taskset id: an installed module exporting one vf.Taskset")
    args: dict[str, Any] = Field(default_factory=dict, description="the taskset's config fields (env.taskset.*)")
    config: dict[str, Any] = Field(default_factory=dict, description="merged into verifiers' EnvConfig as is "
                                   "(seats, timeouts, retries)")
    harness: str = Field("null", description="the seat's harness id (null: verifiers' own chat program)")
    runtime: str = Field("subprocess", description="the seat's runtime type; the default never leaves this machine")
    allow_host_code: bool = Field(False, description="let a harness that runs model-written code (bash) do so in "
                                  "the subprocess runtime, i.e. on this host outside the tool sandbox")
    max_tasks: int = Field(10000, ge=1, description="tasks read from the taskset at most (infinite tasksets)")
    test_fraction: float = Field(0.2, ge=0.0, le=1.0, description="the last this share of tasks is the test split")
    success_threshold: float = Field(1.0, description="an episode is correct when the trace's reward reaches this")
    model_name: str = Field("policy", description="the model name the endpoint serves")
    timeout_s: float = Field(600.0, gt=0, description="a rollout running longer fails (agent_error)")


# environments whose episodes are outside code talking to the rollout worker's endpoint (envs/agent.py)
ENDPOINT_ENVS = ("agent", "verifiers")


# each benchmark's own turn limit, the default of env.max_turns for it: StableToolBench's inference passes
# single_chain_max_step=12 (toolbench/inference/Downstream_tasks/rapidapi.py, run_single_task)
BENCHMARK_MAX_TURNS = {"stabletoolbench": 12}


class EnvConfig(Section):
    name: Literal["toolworld", "toolhop", "stabletoolbench", "tmdb", "codebook", "agent", "verifiers"] = "toolworld"
    max_turns: int = Field(9, ge=1, description="assistant turns per episode (ToolHop's official limit is 9; "
                           "unset, StableToolBench's is 12)")
    system_prompt: str | None = Field(None, description="the system prompt of every episode (synthesis, training, "
                                      "evaluation); None: the built-in trial instructions (direct ones with "
                                      "synth.trial=false). Tools follow it in the model's chat format")
    toolworld: ToolworldConfig = ToolworldConfig()
    toolhop: ToolHopConfig = ToolHopConfig()
    stabletoolbench: StableToolBenchConfig = StableToolBenchConfig()
    tmdb: TMDBConfig = TMDBConfig()
    codebook: CodebookConfig = CodebookConfig()
    agent: AgentEnvConfig = AgentEnvConfig()
    verifiers: VerifiersEnvConfig = VerifiersEnvConfig()
    tool_server: ToolServerConfig = ToolServerConfig()
    judge: JudgeConfig = JudgeConfig()

    @model_validator(mode="before")
    @classmethod
    def _benchmark_turns(cls, data):
        if isinstance(data, dict) and "max_turns" not in data and data.get("name") in BENCHMARK_MAX_TURNS:
            data = {**data, "max_turns": BENCHMARK_MAX_TURNS[data["name"]]}
        return data


class SandboxConfig(Section):
    workers: int = Field(8, ge=1, description="most sandbox template processes per pool (a rollout worker's, an "
                         "env actor's); each serves one call at a time and starts when a call finds none idle")
    timeout_s: float = Field(10.0, gt=0, description="wall-clock limit per tool call")
    memory_mb: int = Field(1024, ge=128, description="address-space cap of a sandbox process")
    output_chars: int = Field(2000, ge=64, description="observations are cut to this many characters")
    scratch_mb: int = Field(64, ge=1, description="size of a call's scratch directory and its largest file")
    isolate: bool = Field(True, description="run tools in Linux namespaces with seccomp (toolmaster.tools.isolation)")
    require_isolation: bool = Field(False, description="refuse to start where a kernel isolation layer is unavailable")


class RewardConfig(Section):
    """Weights of the plain reward functions in toolmaster.rewards (0 switches one off)."""
    correctness: float = 1.0
    format: float = 0.1
    turn_cost: float = 0.0
    trial_cost: float = 0.0
    verbosity_cost: float = 0.0


class SynthConfig(Section):
    num_tasks: int = Field(1000, ge=1)
    seed: int = 0
    trial: bool = Field(True, description="trial-phase data and prompt; False is the no-trial ablation (same "
                        "prompt in SFT, GRPO and eval)")
    mistake_rate: float = Field(0.3, ge=0.0, le=1.0, description="chance of an injected mistake per execution call")
    max_tokens: int = Field(8192, ge=64, description="trajectories longer than this (in the model's tokens) are "
                            "dropped; a 7B agent's trajectories with their tool lists reach several thousand")
    probe_distractors: bool = Field(False, description="the teacher also probes distractor tools in the trial phase")
    teacher: Literal["scripted", "openai"] = Field("scripted", description="scripted: toolworld's rule-following "
                                                   "teacher; openai: an LLM through an OpenAI-compatible endpoint")
    endpoint: EndpointConfig = EndpointConfig(max_tokens=512)
    concurrency: int = Field(8, ge=1, description="teacher calls in flight (openai teacher)")
    split: str = Field("train", description="the split tasks come from (benchmarks with only a test split: "
                       "toolhop with env.toolhop.test_fraction < 1 has a train split)")


class GenerationConfig(Section):
    max_new_tokens: int = Field(1024, ge=1, description="tokens per assistant turn: a 7B model's turn (a note, "
                                "several calls) is cut below a few hundred; the shipped 7B configs use 1024")
    temperature: float = Field(0.0, ge=0.0)
    constrain: Literal["none", "tool_calls"] = Field(
        "none", description="tool_calls: each turn is decoded under a regular expression (vLLM structured "
        "outputs) allowing only well-typed calls to the task's own tools or a short answer, as vLLM's "
        "tool_choice='required'; for smoke runs of models that have not learnt the format. The sampler's "
        "logprobs are then the constrained distribution's, not the policy's: not for training results")


class SamplingConfig(GenerationConfig):
    """Rollout sampling for training: temperature 1 so that the G episodes of a group differ and the
    sampling logprobs are the policy's own."""
    temperature: float = Field(1.0, ge=0.0)


class EvalConfig(Section):
    policy: Literal["model", "oracle", "empty"] = "model"
    split: Literal["train", "val", "test", "test_ood"] = "test"
    num_tasks: int | None = Field(None, ge=1, description="None: the whole split (toolworld: env.toolworld.eval_tasks)")
    model: str | None = Field(None, description="model directory for policy=model")
    generation: GenerationConfig = GenerationConfig()


class EnvActorsConfig(Section):
    num_actors: int = Field(0, ge=0, description="ToolEnv actors for rollouts; 0 runs tools in each rollout worker")
    num_cpus_per_actor: float = Field(0.25, gt=0)
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources per actor")
    max_concurrency: int = Field(1000, ge=1, description="calls one actor serves at once (an async actor: "
                                 "sandbox calls queue for its templates, HTTP calls for the client's pool)")


class EngineConfig(Section):
    """vLLM engine settings of each rollout worker."""
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="float32 keeps engine and learner logprobs comparable on CPU")
    max_model_len: int | None = Field(None, ge=64, description="None: the model's max_position_embeddings")
    kv_cache_gb: float | None = Field(None, gt=0, description="KV-cache memory per engine; None: on a GPU "
                                      "gpu_memory_utilization sizes it, on CPU 1 GB. Set, it overrides both")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="GPU only: the share of the GPU the engine "
                                          "takes; the KV cache gets what weights and activations leave of it")
    enforce_eager: bool = Field(True, description="no CUDA graphs; always true on CPU")
    max_num_seqs: int = Field(64, ge=1, description="sequences the engine batches at once")


class AutoscaleConfig(Section):
    """Rollout workers sized from queue depth (rollout.autoscale); off: a fixed rollout.num_workers."""
    enabled: bool = False
    min_workers: int = Field(1, ge=1)
    max_workers: int = Field(4, ge=1)
    up_cooldown_s: float = Field(0.0, ge=0, description="least time between two scaling changes when growing")
    down_cooldown_s: float = Field(30.0, ge=0, description="least time between changes before shrinking")

    @model_validator(mode="after")
    def _bounds(self) -> "AutoscaleConfig":
        if self.min_workers > self.max_workers:
            raise ValueError(f"min_workers {self.min_workers} > max_workers {self.max_workers}")
        return self


class RolloutConfig(Section):
    num_workers: int = Field(1, ge=1)
    num_cpus_per_worker: float = Field(0.5, gt=0, description="sync GRPO alternates phases, so roles share cores")
    num_gpus_per_worker: float = Field(0.0, ge=0, description="GPU clusters: 1 per vLLM engine")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources per worker, "
                                        "e.g. {rollout: 1} to place workers on nodes of that role")
    max_episodes_per_worker: int = Field(32, ge=1, description="episodes a worker runs concurrently")
    episode_retries: int = Field(1, ge=0, description="an episode that raised (tool, grader, judge) runs again on "
                                 "another worker this many times, then comes back as a failed record")
    failed_episode_reward: float = Field(0.0, description="the reward a failed episode's record carries")
    weight_transport: Literal["object_store", "nccl", "gloo_group"] = Field(
        "object_store", description="object_store (default), nccl (GPU) or gloo_group (CPU, NCCL's group "
        "semantics: docs/weight-sync.md)")
    weight_sync_timeout_s: float = Field(120.0, gt=0, description="group transports: the bound on each "
                                         "collective; the driver's watchdog gives up on a member after twice it")
    gpu_memory_gb: float | None = Field(None, gt=0, description="memory per rollout GPU; when set, grpo refuses "
                                        "an engine that cannot hold one full-length sequence (toolmaster plan)")
    engine: EngineConfig = EngineConfig()
    generation: SamplingConfig = SamplingConfig()
    autoscale: AutoscaleConfig = AutoscaleConfig()


class LoRAConfig(Section):
    """Low-rank adapters (peft) instead of full fine-tuning; rank 0 disables them."""
    rank: int = Field(0, ge=0)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LearnerConfig(Section):
    num_ranks: int = Field(2, ge=1)
    num_cpus_per_rank: float = Field(0.5, gt=0)
    num_gpus_per_rank: float = Field(0.0, ge=0, description="GPU clusters: 1 per rank")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources per rank "
                                        "(its placement-group bundle), e.g. {learner: 1}")
    zero_stage: Literal[2, 3] = 2
    backend: Literal["gloo", "nccl"] = "gloo"
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="where each rank computes: auto is CUDA "
                                                   "when Ray gave the rank a GPU, else CPU")
    lr: float = Field(1e-6, gt=0, description="GRPO's learning rate: 1e-6 for a 7B model (verl's and OpenRLHF's "
                      "GRPO examples); the tiny model's recipe uses 1e-4")
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    eps_low: float = Field(0.2, ge=0)
    eps_high: float = Field(0.28, ge=0)
    clip_ratio_c: float = Field(3.0, gt=1, description="dual clip: for a negative advantage the per-token loss is "
                                "capped at −c·A, however far the importance ratio exceeds 1 + eps_high")
    kl_beta: float = Field(0.0, ge=0, description="weight of KL(π‖π_ref) to the frozen starting model; 0 loads no "
                           "reference")
    lora: LoRAConfig = LoRAConfig()
    max_tokens_per_microbatch: int = Field(8192, ge=0, description="padded tokens per forward/backward on a rank "
                                           "(gradients accumulate over micro-batches, one optimizer step per "
                                           "step); 0: the rank's whole shard in one pass")
    max_sequences_per_microbatch: int = Field(0, ge=0, description="sequences per micro-batch at most; 0: no cap")
    logprob_chunk_tokens: int = Field(1024, ge=0, description="positions per vocabulary projection: the "
                                      "[tokens × vocab] logits never exist at once; 0: unchunked")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="bfloat16: DeepSpeed bf16 (fp32 master "
                                                  "weights and optimizer states)")
    gradient_checkpointing: bool = Field(False, description="recompute each layer's activations in backward")
    offload_optimizer: bool = Field(False, description="ZeRO optimizer states (and the step) on CPU memory")
    gpu_memory_gb: float | None = Field(None, gt=0, description="memory per learner GPU; when set, grpo/sft "
                                        "refuse a memory plan that does not fit (toolmaster plan)")

    @model_validator(mode="after")
    def _nccl_needs_gpus(self) -> "LearnerConfig":
        if self.backend == "nccl" and (self.device == "cpu" or not self.num_gpus_per_rank):
            raise ValueError("learner.backend = 'nccl' reduces on GPUs: it needs learner.num_gpus_per_rank > 0 and "
                             f"learner.device auto or cuda (now {self.num_gpus_per_rank:g} GPUs, {self.device!r}); "
                             "use gloo on CPU")
        if self.device == "cuda" and not self.num_gpus_per_rank:
            raise ValueError("learner.device = 'cuda' needs learner.num_gpus_per_rank > 0: Ray hides every GPU "
                             "from an actor it gave none")
        return self


class GRPOConfig(Section):
    steps: int = Field(10, ge=1)
    prompts_per_step: int = Field(4, ge=1, description="B: tasks per step")
    group_size: int = Field(4, ge=2, description="G: episodes per task")
    std_normalize: bool = Field(True, description="divide the outcome advantage by its group std; False gives "
                                "Dr.GRPO (shaping terms are never rescaled, see trainer/advantages.py)")
    train_on_failed_episodes: bool = Field(False, description="failed episodes (an exception, see rollout."
                                           "episode_retries) join the loss with rollout.failed_episode_reward")
    filter_groups: bool = Field(False, description="DAPO dynamic sampling: drop groups whose outcome does not vary "
                                "and sample new tasks until B informative groups are collected")
    max_sampling_rounds: int = Field(3, ge=1, description="filter_groups: sampling rounds per step at most "
                                     "(then the step trains on the informative groups it has)")
    loss_aggregation: Literal["token_mean", "sequence_mean"] = Field(
        "token_mean", description="token_mean: every sampled token weighs the same; sequence_mean: every "
        "episode weighs the same, which favours long failures (measured: finish rate 0.81 → 0.64, docs/grpo.md)")
    failure_credit: Literal["whole", "until_first_error"] = Field(
        "whole", description="whole: every sampled token of an unsuccessful episode carries its advantage; "
        "until_first_error: only its turns up to its first failed execution call (its retries repeat right "
        "moves with wrong details; trainer/advantages.py)")
    context_limit: Literal["train", "mask"] = Field(
        "train", description="an episode whose next turn no longer fits rollout.engine.max_model_len (finish "
        "reason context_limit; its record ends at its last sampled turn): train it with its advantage like any "
        "other, or mask it out of the loss (DAPO's overlong filtering) while it still counts in its group")
    warmup_steps: int = Field(2, ge=0, description="linear learning-rate warm-up over the first updates "
                              "(with optimizer_state 'fresh' the RL stage starts with empty Adam moments)")
    optimizer_state: Literal["fresh", "checkpoint"] = Field(
        "fresh", description="fresh: new Adam moments; checkpoint: continue the --model step checkpoint's "
        "(an SFT or GRPO run's `checkpoints/latest`, written with the same learner.num_ranks and zero_stage)")
    updates_per_step: int = Field(2, ge=1, description="optimizer updates per step, each on a slice of the "
                                  "groups (PPO-style mini-batches; the later ones are off-policy and clipped)")
    eval_every: int = Field(0, ge=0, description="greedy held-out evaluation every N steps on the rollout fleet "
                            "(and before the first step); 0: none")
    eval_tasks: int = Field(50, ge=1, description="tasks per held-out evaluation")
    eval_split: str = Field("test", description="the held-out split evaluated during training (toolworld: 'val' "
                            "has its own tasks on unseen tools, for choosing a checkpoint)")
    keep_best: bool = Field(False, description="checkpoints/best names the model (the start model or a step "
                            "checkpoint) with the best held-out score on grpo.eval_split over the run's evaluations; "
                            "needs eval_every and a split other than the reported eval.split")
    checkpoint_every: int = Field(0, ge=0, description="0: only at the end")
    keep_checkpoints: int = Field(2, ge=1, description="step checkpoints kept (the newest is also `latest`)")
    save_rollouts: bool = Field(False, description="write every sampled episode of each step, with its advantage "
                                "and the turns that carried gradient, to rollouts/step-N.jsonl in the run directory")
    async_rollouts: bool = Field(False, description="generate step s+1's episodes while step s trains")
    max_staleness: int = Field(1, ge=0, description="async: episodes sampled more than this many versions "
                                                   "before the one being trained are re-sampled")
    seed: int = 0


class SFTConfig(Section):
    data: str | None = Field(None, description="JSONL/JSON file or folder (OpenAI chat or ShareGPT rows), a saved "
                             "dataset (`toolmaster synth`) or a hub dataset id")
    max_bad_fraction: float = Field(0.05, ge=0, le=1, description="the run refuses data of which a larger share "
                                    "of rows is malformed or longer than max_tokens (each is reported)")
    steps: int = Field(400, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-5, gt=0, description="peak SFT learning rate: 1e-5 for full fine-tuning of a 7B instruct "
                      "model; the tiny model, trained from scratch, needs 2e-3")
    warmup_steps: int = Field(20, ge=0, description="linear warm-up, then cosine decay to min_lr_ratio × lr")
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    max_tokens: int = Field(8192, ge=64, description="longer rows are dropped (and reported); within "
                            "learner.max_tokens_per_microbatch")
    checkpoint_every: int = Field(0, ge=0)
    keep_checkpoints: int = Field(2, ge=1, description="step checkpoints kept (the newest is also `latest`)")


class ClusterConfig(Section):
    """What a run waits for from the Ray cluster, and what it shows of an actor that fails."""
    resource_wait_s: float = Field(60.0, gt=0, description="a placement group or actor that asks for resources "
                                   "no node of the cluster has (learner, rollout, GPU) fails after this wait, "
                                   "with what is missing and what the cluster has, when no autoscaler can add them")
    autoscaler_wait_s: float = Field(900.0, gt=0, description="the same wait where the cluster has an autoscaler "
                                     "that may add nodes with the missing resources (the console says what it "
                                     "waits for)")
    autoscaler: Literal["detect", "present", "absent"] = Field(
        "detect", description="detect: from the autoscaler's status in the cluster (a local Ray instance has none)")
    log_tail_lines: int = Field(20, ge=0, description="lines of a failed actor's own log (stderr, then stdout) "
                                "quoted in the driver's error")


class Config(Section):
    run_dir: str = "runs/default"
    model: ModelConfig = ModelConfig()
    env: EnvConfig = EnvConfig()
    sandbox: SandboxConfig = SandboxConfig()
    rewards: RewardConfig = RewardConfig()
    synth: SynthConfig = SynthConfig()
    eval: EvalConfig = EvalConfig()
    rollout: RolloutConfig = RolloutConfig()
    env_actors: EnvActorsConfig = EnvActorsConfig()
    learner: LearnerConfig = LearnerConfig()
    grpo: GRPOConfig = GRPOConfig()
    sft: SFTConfig = SFTConfig()
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _selection_split(self) -> "Config":
        g = self.grpo
        if g.keep_best and not g.eval_every:
            raise ValueError("grpo.keep_best chooses among the evaluations of grpo.eval_every: set grpo.eval_every")
        if g.keep_best and g.eval_split == self.eval.split:
            raise ValueError(f"grpo.keep_best would choose the checkpoint on grpo.eval_split={g.eval_split!r}, the "
                             "split eval.split reports: choose on another held-out split (toolworld: "
                             "grpo.eval_split=val)")
        return self

    @model_validator(mode="after")
    def _transport(self) -> "Config":
        if self.rollout.weight_transport == "nccl" and self.learner.backend != "nccl":
            raise ValueError("rollout.weight_transport 'nccl' needs learner.backend 'nccl' (GPU learners)")
        if self.synth.teacher == "openai" and not self.synth.endpoint.base_url:
            raise ValueError("synth.teacher 'openai' needs synth.endpoint.base_url (--base-url URL)")
        return self


def check_runtime(cfg: Config) -> None:
    """What the config needs from this machine, checked before any actor starts."""
    if cfg.rollout.weight_transport == "nccl" or cfg.learner.backend == "nccl":
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("rollout.weight_transport/learner.backend 'nccl' need CUDA GPUs; this machine has "
                              "none (use object_store and gloo on CPU)")
    if cfg.env.name in ENDPOINT_ENVS:  # the agent's code and tasks load here, so a typo fails before Ray starts
        try:
            make_env(cfg.env)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def _lookup(data: Any, path: tuple) -> Any:
    for key in path:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return "<missing>"
    return data


def _format_error(err: ValidationError, data: dict) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<root>"
        value = e.get("input", _lookup(data, e["loc"])) if e["loc"] else None
        if e["type"] == "extra_forbidden":
            lines.append(f"{field}: unknown field (value {value!r})")
        else:
            lines.append(f"{field} = {value!r}: {e['msg']}")
    return "invalid config:\n  " + "\n  ".join(lines)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set ``a.b.c=value`` pairs in a nested dict; values are parsed as YAML scalars ("3" -> 3)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r} has an empty key segment")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        node = data
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {p!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def build_config(data: dict | None = None, overrides: list[str] | None = None) -> Config:
    import copy

    data = apply_overrides(copy.deepcopy(data or {}), list(overrides or []))  # the caller's dict stays as it was
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, data)) from None


def _merged(base: dict, data: dict) -> dict:
    out = dict(base)
    for key, value in data.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> Config:
    """The config file over ``base`` (settings beneath the file, e.g. the tiny model's), then ``overrides``."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    return build_config(_merged(base or {}, data), overrides)


def dump_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
