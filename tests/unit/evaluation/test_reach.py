"""Reach: which greedy failures the training sampler solves at least once (what GRPO can learn from)."""
from tests.fakes import ScriptedPool
from toolmaster.envs import make_env
from toolmaster.evaluation.reach import sample_failures


def _index(episode_id: str) -> tuple[int, int]:
    task, sample = episode_id.removeprefix("reach-t").split("-g")
    return int(task), int(sample)


def test_only_failures_are_sampled_and_counted_per_group(cfg):
    tasks = make_env(cfg.env).tasks("test", 6)
    greedy = [{"correct": i in (0, 3)} for i in range(6)]
    wins = {(1, 0), (1, 3), (4, 2)}  # task 1 twice, task 4 once, tasks 2 and 5 never
    pool = ScriptedPool(lambda task, episode_id, settings: _index(episode_id) in wins)
    reach = sample_failures(pool, tasks, greedy, samples=4, generation={"temperature": 1.0})
    assert pool.calls[0]["episode_ids"] == [f"reach-t{i}-g{g}" for i in (1, 2, 4, 5) for g in range(4)]
    assert pool.calls[0]["generation"] == {"temperature": 1.0}
    assert (reach["tasks"], reach["greedy_correct"], reach["failures"], reach["reachable"]) == (6, 2, 4, 2)
    assert reach["sampled_success"] == round(3 / 16, 3)
    assert reach["reachable_task_ids"] == [tasks[1].id, tasks[4].id]
    assert sum(g["tasks"] for g in reach["by_group"].values()) == 6
    assert set(reach["by_group"]) == {t.metadata["group"] for t in tasks}
    keys = {"tasks", "greedy_correct", "failures", "reachable", "sampled_success"}
    assert all(set(g) == keys for g in reach["by_group"].values())
    assert all(g["sampled_success"] is None for g in reach["by_group"].values() if not g["failures"])
