import os

from toolmaster.models.tiny import TINY_SETTINGS as TINY

for key, value in {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                   "WANDB_MODE": "offline", "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false",
                   "VLLM_LOGGING_LEVEL": "WARNING", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}.items():
    os.environ.setdefault(key, value)

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from toolmaster.config import Config, build_config  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOOLHOP = DATA / "toolhop" / "toolhop_100.jsonl"
# Qwen2.5-Instruct's published tokenizer files and configs, no weights (../shared/models/README.md)
QWEN = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "qwen2.5-instruct"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def cfg() -> Config:
    # the builder's copy pre-training (2.5 min) is measured by its own test and the quickstart
    return build_config(TINY, ["model.copy_pretrain_steps=0"])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, cfg) -> str:
    from toolmaster.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_model(cfg, out, tie_embeddings=False)
    return str(out)


@pytest.fixture
def sandbox():
    from toolmaster.tools.sandbox import SandboxPool

    pool = SandboxPool(workers=1, timeout_s=2.0, memory_mb=512, output_chars=500)
    yield pool
    pool.close()


ROOT = Path(__file__).resolve().parents[1]
# rollout workers import test agents (tests.agents) and the verifiers taskset written here (vf_codes); faults
# are injected in worker processes only for tasks that ask (tests/fakes.py)
RAY_ENV = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "vf_plugins")])},
           "worker_process_setup_hook": "tests.fakes.fault_injection_hook"}
sys.path.insert(0, str(ROOT / "tests" / "vf_plugins"))


def start_ray(**kwargs) -> None:
    import ray

    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, **{"runtime_env": RAY_ENV, **kwargs})


def stop_ray() -> None:
    """Ends the shared Ray instance and every fleet on it (a test that needs Ray of its own)."""
    import ray

    from tests.integration.fleets import FLEETS

    FLEETS.close()
    ray.shutdown()


def ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        start_ray()


@pytest.fixture
def ray_local():
    """The pytest session's Ray instance, started by the first test that needs it; fleets live on it."""
    ensure_ray()


@pytest.fixture
def fresh_ray():
    """A Ray instance of the test's own (the shared one and its fleets end first); kwargs via ``request``."""
    stop_ray()
    yield start_ray
    stop_ray()


@pytest.fixture(scope="session")
def real_shape_model_dir(tmp_path_factory) -> str:
    """Random weights on Qwen2.5-Instruct's real tokenizer and template (151,665 tokens), kept small: the
    vocabulary projection dominates every step at this size. Room for benchmark prompts too (TMDB's 54 tool
    schemas), so the benchmark evaluations run on its fleet."""
    from toolmaster.models.real_shape import build_real_shape_model

    cfg = build_config(TINY, ["model.hidden_size=64", "model.num_heads=2", "model.num_kv_heads=1",
                            "model.intermediate_size=128", "model.num_layers=2",
                            "model.max_position_embeddings=24576"])
    out = tmp_path_factory.mktemp("real_shape") / "model"
    build_real_shape_model(cfg, out, QWEN)
    return str(out)


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """The real Qwen2.5-Instruct tokenizer (151,665 tokens) with its official chat template."""
    from transformers import AutoTokenizer

    assert (QWEN / "vocab.json").is_file(), f"the shared Qwen2.5 tokenizer files are missing: {QWEN}"
    return AutoTokenizer.from_pretrained(str(QWEN))


@pytest.fixture(scope="session")
def model_server(tiny_model_dir, tmp_path_factory):
    """The tiny model behind vLLM's OpenAI-compatible server (what `toolmaster serve-model` runs)."""
    import sys

    from toolmaster.llm.serve_model import ModelServer
    from toolmaster.toolserver.process import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "toolmaster.cli", "serve-model", tiny_model_dir, "--port", str(port), "--name", "tiny",
           "--max-model-len", "2048", "--dtype", "float32", "--enforce-eager",
           "--kv-cache-memory-bytes", str(512 * 2**20)]
    with ModelServer(cmd, port, log_path=str(tmp_path_factory.mktemp("vllm") / "server.log")) as server:
        yield server


TIERS = {"unit": 0, "integration": 1, "system": 2}
# in the system tier, the tests that also use the shared fleets come first, and those that stop the shared
# Ray instance (a cluster of their own) last
SYSTEM_LAST = ("tests/system/trainer/test_ray_job.py", "tests/system/cluster/")


def pytest_addoption(parser):
    parser.addoption("--reverse", action="store_true", help="run the selected tests in reverse order (tests "
                     "must pass in any order: shared fleets are reset between them)")


def pytest_collection_modifyitems(config, items):
    """Unit tests first (they fail fastest), then the shared-fleet tier, then fresh fleets."""
    def tier(item) -> tuple[int, int]:
        path = Path(str(item.fspath))
        if not path.is_relative_to(ROOT / "tests"):
            return 1, 0
        relative = path.relative_to(ROOT).as_posix()
        return (TIERS.get(path.relative_to(ROOT / "tests").parts[0], 1),
                next((i + 1 for i, prefix in enumerate(SYSTEM_LAST) if relative.startswith(prefix)), 0))

    items.sort(key=tier)
    if config.getoption("--reverse"):
        items.reverse()


STARTED = {"rollout pools": 0, "learner groups": 0}  # built in this process (child processes not counted)


def pytest_configure(config):
    """Count every rollout pool and learner group a test builds, shared or not."""
    from toolmaster.learner.group import LearnerGroup
    from toolmaster.rollout.pool import RolloutPool

    for cls, name in ((RolloutPool, "rollout pools"), (LearnerGroup, "learner groups")):
        def counted(self, *args, __init=cls.__init__, __name=name, **kwargs):
            STARTED[__name] += 1
            __init(self, *args, **kwargs)
        cls.__init__ = counted


def pytest_terminal_summary(terminalreporter):
    from tests.integration.fleets import FLEETS

    terminalreporter.write_line(f"shared fleets started: {FLEETS.started}; in this process: "
                                + ", ".join(f"{n} {k}" for k, n in STARTED.items()))
