"""codebook: K coded answers per task, one rewarded (the same in every task)."""
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.models.tiny import TINY_SETTINGS as TINY


def test_one_code_of_k_is_rewarded_in_every_task():
    env = make_env(build_config(TINY, ["env.name=codebook", "env.codebook.num_codes=5"]).env)
    tasks = env.tasks("train", 20)
    assert len({t.question for t in tasks}) > 1  # the order changes
    assert all(sorted(t.metadata["codes"]) == sorted(env.codes) and t.reference == env.rewarded for t in tasks)
    assert env.is_correct(tasks[0], None, f" {env.rewarded} ", None)
    assert not any(env.is_correct(tasks[0], None, c, None) for c in env.codes[1:])
    assert not env.is_correct(tasks[0], None, None, None)
    assert make_env(build_config(TINY, ["env.name=codebook", "env.codebook.seed=1"]).env).codes != env.codes
