import os

for key, value in {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                   "WANDB_MODE": "offline", "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false",
                   "VLLM_LOGGING_LEVEL": "WARNING", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}.items():
    os.environ.setdefault(key, value)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from toolmaster.config import Config, build_config  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOOLHOP = DATA / "toolhop" / "toolhop_100.jsonl"


@pytest.fixture(scope="session")
def cfg() -> Config:
    # the builder's copy pre-training (2.5 min) is measured by its own test and the quickstart
    return build_config({}, ["model.copy_pretrain_steps=0"])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, cfg) -> str:
    from toolmaster.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_model(cfg, out, tie_embeddings=False)
    return str(out)


@pytest.fixture(scope="session")
def long_context_model_dir(tmp_path_factory) -> str:
    """The tiny model with room for benchmark prompts: with its small vocabulary ToolHop prompts reach 5.3 k
    tokens and TMDB's 54 tool schemas 20 k."""
    from toolmaster.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny_long") / "model"
    build_tiny_model(build_config({}, ["model.copy_pretrain_steps=0", "model.max_position_embeddings=24576"]), out,
                     tie_embeddings=False)
    return str(out)


@pytest.fixture
def sandbox():
    from toolmaster.tools.sandbox import SandboxPool

    pool = SandboxPool(workers=1, timeout_s=2.0, memory_mb=512, output_chars=500)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance per test module (test_ray_job starts its own head, so none outlives a module)."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def model_server(tiny_model_dir, tmp_path_factory):
    """The tiny model behind vLLM's OpenAI-compatible server (what `toolmaster serve-model` runs)."""
    import sys

    from toolmaster.llm.serve_model import ModelServer
    from toolmaster.toolserver.process import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "toolmaster.cli", "serve-model", tiny_model_dir, "--port", str(port), "--name", "tiny",
           "--max-model-len", "2048", "--dtype", "float32", "--enforce-eager", "--kv-cache-memory-bytes", str(512 * 2**20)]
    with ModelServer(cmd, port, log_path=str(tmp_path_factory.mktemp("vllm") / "server.log")) as server:
        yield server
