"""Paired comparison of two evaluations on the same held-out tasks."""
import json

import pytest

from toolmaster.evaluation.compare import describe, load_report, paired_difference, sign_test


def _report(solved: list[int], ids=None, error_at=()):
    ids = ids or [f"t{i}" for i in range(len(solved))]
    return {"items": [{"task_id": t, "grade": float(s), "error": {"kind": "tool"} if i in error_at else None}
                      for i, (t, s) in enumerate(zip(ids, solved))]}


def test_sign_test_is_exact():
    assert sign_test(0, 0) == 1.0
    assert sign_test(6, 0) == pytest.approx(2 / 64)  # six fixed, none broken: p = 2 × 0.5^6
    assert sign_test(7, 10) == sign_test(10, 7) == pytest.approx(0.6291, abs=1e-4)


def test_paired_difference_counts_fixed_and_broken_tasks_and_bounds_the_difference():
    before = _report([1] * 10 + [0] * 10)
    after = _report([1] * 8 + [0, 0] + [1] * 6 + [0] * 4)  # 2 broken, 6 fixed
    c = paired_difference(before, after)
    assert (c["tasks"], c["fixed"], c["broken"], c["difference"]) == (20, 6, 2, 0.2)
    assert c["ci95"][0] < 0.2 < c["ci95"][1] and c["p_value"] == pytest.approx(sign_test(6, 2), abs=1e-4)
    assert c == paired_difference(before, after)  # seeded: the same interval every time
    assert "+0.200" in describe(c) and "fixed 6, broken 2" in describe(c)
    same = paired_difference(before, before)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0] and same["p_value"] == 1.0


def test_only_shared_tasks_count_and_an_errored_episode_scores_zero():
    before = _report([1, 1, 1], ids=["a", "b", "c"])
    after = _report([1, 1, 1, 1], ids=["a", "b", "c", "d"], error_at=(1,))  # "b" raised: 0, like the report
    c = paired_difference(before, after)
    assert (c["tasks"], c["broken"], c["fixed"]) == (3, 1, 0)
    with pytest.raises(ValueError, match="share no task"):
        paired_difference(before, _report([1], ids=["z"]))


def test_a_report_is_read_from_its_file_or_folder_and_anything_else_is_one_clear_error(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "report.json").write_text(json.dumps(_report([1, 0])))
    assert load_report(str(tmp_path / "eval")) == load_report(str(tmp_path / "eval" / "report.json"))
    (tmp_path / "garbled.json").write_text("{not json")
    (tmp_path / "summary.json").write_text(json.dumps({"success": {"sft": 0.6, "grpo": 0.7}}))  # the quickstart's
    (tmp_path / "graded.json").write_text(json.dumps({"items": [{"task_id": "a", "grade": "yes"}]}))
    for name, message in (("missing", "no report.json"), ("garbled.json", "not a readable JSON report"),
                          ("summary.json", "not an evaluation report"), ("graded.json", "not an evaluation report")):
        with pytest.raises(ValueError, match=message):
            load_report(str(tmp_path / name))
