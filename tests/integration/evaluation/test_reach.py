"""Reach: which greedy failures the training sampler solves at least once (what GRPO can learn from)."""
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.evaluation.reach import sample_failures


class ScriptedPool:
    """run_specs stand-in: an episode succeeds when its (task index, sample) is listed."""

    def __init__(self, wins: set[tuple[int, int]]):
        self.wins, self.specs, self.generation = wins, [], None

    def run_specs(self, specs, generation=None):
        self.specs, self.generation = specs, generation
        out = []
        for episode_id, _ in specs:
            task, sample = episode_id.removeprefix("reach-t").split("-g")
            out.append({"episode_id": episode_id, "correct": (int(task), int(sample)) in self.wins})
        return out


def test_only_failures_are_sampled_and_counted_per_group(cfg):
    tasks = make_env(cfg.env).tasks("test", 6)
    greedy = [{"correct": i in (0, 3)} for i in range(6)]
    pool = ScriptedPool(wins={(1, 0), (1, 3), (4, 2)})  # task 1 twice, task 4 once, tasks 2 and 5 never
    reach = sample_failures(pool, tasks, greedy, samples=4, generation={"temperature": 1.0})
    assert [s[0] for s in pool.specs] == [f"reach-t{i}-g{g}" for i in (1, 2, 4, 5) for g in range(4)]
    assert pool.generation == {"temperature": 1.0}
    assert (reach["tasks"], reach["greedy_correct"], reach["failures"], reach["reachable"]) == (6, 2, 4, 2)
    assert reach["sampled_success"] == round(3 / 16, 3)
    assert reach["reachable_task_ids"] == [tasks[1].id, tasks[4].id]
    assert sum(g["tasks"] for g in reach["by_group"].values()) == 6
    assert set(reach["by_group"]) == {t.metadata["group"] for t in tasks}
    keys = {"tasks", "greedy_correct", "failures", "reachable", "sampled_success"}
    assert all(set(g) == keys for g in reach["by_group"].values())
    assert all(g["sampled_success"] is None for g in reach["by_group"].values() if not g["failures"])


def test_reach_on_the_real_fleet(fleets, tiny_model_dir):
    cfg = build_config({}, ["rollout.generation.max_new_tokens=16", "env.max_turns=2", "rollout.num_workers=1"])
    tasks = make_env(cfg.env).tasks("test", 3)
    pool = fleets.pool(cfg, tiny_model_dir)
    greedy = pool.run_specs([(f"g{i}", t) for i, t in enumerate(tasks)],
                            generation=cfg.eval.generation.model_dump())
    reach = sample_failures(pool, tasks, greedy, samples=2, generation=cfg.rollout.generation.model_dump())
    # an untrained model fails every task greedily and in every sample
    assert (reach["failures"], reach["reachable"], reach["sampled_success"]) == (3, 0, 0.0)
