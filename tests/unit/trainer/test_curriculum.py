"""The toolworld curriculum: difficulty follows recent training success; tasks change with the level."""
from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.trainer.curriculum import Curriculum


def _curriculum(*overrides):
    return Curriculum(build_config(TINY, ["env.toolworld.curriculum.enabled=true", *overrides]).env.toolworld)


def test_difficulty_moves_with_success():
    cur = _curriculum("env.toolworld.curriculum.window=2")
    assert cur.level == 1
    assert cur.update(0.9)["curriculum/level"] == 1  # one step above the band is not yet a trend
    up = cur.update(0.8)
    assert up["curriculum/level"] == 2 and up["curriculum/moved"] == 1 and up["curriculum/distractors"] == 2
    assert cur.update(0.5)["curriculum/level"] == 2 and cur.update(0.6)["curriculum/level"] == 2  # inside the band
    cur.update(0.1)
    down = cur.update(0.0)
    assert down["curriculum/level"] == 1 and down["curriculum/moved"] == -1
    cur.update(0.0), cur.update(0.0)
    assert cur.level == 0
    cur.update(0.0), cur.update(0.0)
    assert cur.level == 0  # the easiest level is a floor
    assert cur.knobs() == {"min_hops": 1, "max_hops": 1, "distractors": 0, "quirk_rate": 0.5}


def test_tasks_follow_the_level_and_state_resumes():
    cur = _curriculum()
    easy_cfg = build_config(TINY, ["env.toolworld.curriculum.enabled=true", "env.toolworld.curriculum.start_level=0"])
    easy = Curriculum(easy_cfg.env.toolworld).tasks("train", 8, start=0)
    hard = Curriculum(build_config(TINY, ["env.toolworld.curriculum.start_level=3"]).env.toolworld).tasks("train", 8, 0)
    assert all(t.metadata["hops"] == 1 and len(t.tools) == 1 for t in easy)  # 1 hop, no distractor
    assert max(t.metadata["hops"] for t in hard) == 3 and all(len(t.tools) == t.metadata["hops"] + 2 for t in hard)
    assert {t.id for t in easy}.isdisjoint({t.id for t in hard})  # the level is part of the task id
    cur.update(0.9)
    resumed = Curriculum(cur.base, cur.state())
    assert resumed.update(0.9)["curriculum/level"] == 2  # the window carried over


def test_a_level_can_fix_the_hop_count():
    # one level with a hop floor: a fixed training mix (two-hop tasks only), whatever the success
    cur = Curriculum(build_config({"env": {"toolworld": {"curriculum": {
        "enabled": True, "start_level": 0, "levels": [{"min_hops": 2, "max_hops": 2}]}}}}).env.toolworld)
    assert {t.metadata["hops"] for t in cur.tasks("train", 30, start=0)} == {2}
    cur.update(1.0), cur.update(1.0)
    assert cur.level == 0 and cur.knobs()["min_hops"] == 2


def test_bad_curriculum_settings_fail_at_load():
    import pytest

    from toolmaster.config import ConfigError

    with pytest.raises(ConfigError, match="target_low"):
        build_config(TINY, ["env.toolworld.curriculum.target_low=0.8", "env.toolworld.curriculum.target_high=0.5"])
    with pytest.raises(ConfigError, match="levels.0.max_hops"):
        build_config(TINY, ["env.toolworld.curriculum.levels=[{max_hops: 9}]"])
    with pytest.raises(ConfigError, match="start_level"):
        build_config(TINY, ["env.toolworld.curriculum.start_level=7"])
