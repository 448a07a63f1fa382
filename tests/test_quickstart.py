from toolmaster.quickstart import rl_gain


def report(success, trials):
    return {"success": success, "mean_trial_calls": trials}


def test_rl_gain_needs_both_the_success_gain_and_the_trials_kept():
    assert rl_gain(report(0.6, 2.5), report(0.72, 2.4))["met"]
    assert not rl_gain(report(0.6, 2.5), report(0.65, 2.5))["met"]  # too small a gain
    dropped = rl_gain(report(0.6, 2.5), report(0.9, 1.5))  # bought by skipping trials
    assert dropped["trial_calls_ratio"] == 0.6 and not dropped["met"]


def test_rl_gain_without_trials_judges_success_alone():
    gain = rl_gain(report(0.2, 0.0), report(0.31, 0.0))
    assert gain["trial_calls_ratio"] is None and gain["met"] and gain["success"] == 0.11


def test_rl_gain_reports_what_grpo_could_learn_from():
    sft = {**report(0.9, 2.8), "reach": {"tasks": 50, "failures": 5, "reachable": 1}}
    gain = rl_gain(sft, report(0.92, 2.8))
    assert (gain["sft_failures"], gain["reachable_failures"], gain["reachable_share"]) == (5, 1, 0.02)
    assert "reachable_failures" not in rl_gain(report(0.9, 2.8), report(0.92, 2.8))
