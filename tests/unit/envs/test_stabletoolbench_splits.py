"""StableToolBench on your own ToolBench queries: a train split and a disjoint test split; a config whose
training and evaluation queries overlap is refused before anything starts, with the count."""
import json

import pytest

from tests.conftest import DATA
from tests.stabletoolbench_data import write_queries
from toolmaster.config import build_config
from toolmaster.config_base import ConfigError
from toolmaster.envs import make_env
from toolmaster.evaluation.runner import evaluate
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.preflight import FAILED, run_checks
from toolmaster.toolserver.process import served_docs

STB = "env.name=stabletoolbench"


def env_of(*overrides):
    return make_env(build_config(TINY, [STB, *overrides]).env)


def test_queries_split_into_disjoint_train_and_test_by_fraction_and_seed(tmp_path):
    write_queries(tmp_path / "q" / "mine_a.json", range(1, 11))
    write_queries(tmp_path / "q" / "mine_b.json", range(11, 21))
    env = env_of(f"env.stabletoolbench.queries={tmp_path / 'q'}", "env.stabletoolbench.test_fraction=0.25")
    train, test = env.tasks("train"), env.tasks("test")
    assert env.splits == ("train", "test") and (len(train), len(test)) == (15, 5)
    ids = lambda tasks: {t.metadata["query_id"] for t in tasks}  # noqa: E731
    assert not ids(train) & ids(test) and ids(train) | ids(test) == set(range(1, 21))
    assert {t.metadata["group"] for t in train} <= {"mine_a", "mine_b"}
    again = env_of(f"env.stabletoolbench.queries={tmp_path / 'q'}", "env.stabletoolbench.test_fraction=0.25")
    assert ids(again.tasks("test")) == ids(test)  # the seed fixes the split
    other = env_of(f"env.stabletoolbench.queries={tmp_path / 'q'}", "env.stabletoolbench.test_fraction=0.25",
                   "env.stabletoolbench.seed=1")
    assert ids(other.tasks("test")) != ids(test)
    # the tools call the server with the names StableToolBench's agent sends, and cut observations at 1024
    executor = train[0].tools[0].executor
    assert (executor.category, executor.tool_name, executor.api_name) == ("Travel", "sky_tides", "get_tide_times")
    assert executor.max_observation_chars == 1024 and train[0].tools[-1].name == "Finish"


def test_your_own_train_and_test_files(tmp_path):
    train = write_queries(tmp_path / "train.json", range(1, 6))
    test = write_queries(tmp_path / "test.json", range(6, 9))
    env = env_of(f"env.stabletoolbench.train_queries={train}", f"env.stabletoolbench.test_queries={test}")
    assert (env.size("train"), env.size("test")) == (5, 3)
    # without test_queries the test split is the benchmark's own queries (data)
    env = env_of(f"env.stabletoolbench.train_queries={train}")
    assert (env.size("train"), env.size("test")) == (5, 765)


def test_overlapping_train_and_test_ids_are_refused_with_the_count(tmp_path):
    train = write_queries(tmp_path / "train.json", range(1, 6))
    test = write_queries(tmp_path / "test.json", range(4, 9))  # ids 4 and 5 in both
    overrides = [f"env.stabletoolbench.train_queries={train}", f"env.stabletoolbench.test_queries={test}"]
    with pytest.raises(ConfigError, match="2 of the 5 training query ids are also in the test split"):
        env_of(*overrides)
    cfg = build_config(TINY, [STB, *overrides, "eval.policy=oracle"])
    with pytest.raises(ConfigError, match="2 of the 5"):  # evaluation refuses it before any episode
        evaluate(cfg, tmp_path / "eval")
    checks = {c.name: c for c in run_checks(cfg, "grpo")}  # `toolmaster check`: the environment check fails
    assert checks["environment"].status == FAILED and "2 of the 5" in checks["environment"].detail


def test_the_benchmarks_test_queries_stay_test_only(tmp_path):
    shared = json.loads((DATA / "stabletoolbench" / "test_instruction" / "G3_instruction.json").read_text())
    mine = write_queries(tmp_path / "q" / "mine.json", range(900_000_001, 900_000_011))
    leaked = tmp_path / "q" / "leaked.json"
    leaked.write_text(json.dumps(shared[:3]))
    with pytest.raises(ConfigError, match="3 of the 13 training query ids are StableToolBench test queries"):
        env_of(f"env.stabletoolbench.queries={tmp_path / 'q'}", "env.stabletoolbench.test_fraction=0")
    assert env_of(f"env.stabletoolbench.queries={mine}").size("train") == 8
    # without your own queries there is no train split: GRPO and synthesis have nothing to train on
    env = env_of()
    assert env.splits == ("test",)
    with pytest.raises(ConfigError, match="no train split without your own queries"):
        env.tasks("train")


def test_split_settings_are_one_or_the_other(tmp_path):
    with pytest.raises(ConfigError, match="set one or the other"):
        build_config(TINY, [STB, "env.stabletoolbench.queries=a", "env.stabletoolbench.train_queries=b"])
    with pytest.raises(ConfigError, match="set train_queries too"):
        build_config(TINY, [STB, "env.stabletoolbench.test_queries=a"])


def test_the_started_tool_server_serves_your_queries_docs(tmp_path):
    cfg = build_config(TINY, [STB, "env.stabletoolbench.queries=/data/mine"])
    assert served_docs(cfg.env) == [*cfg.env.tool_server.docs, "/data/mine"]
