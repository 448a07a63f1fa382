from toolmaster.protocol import EpisodeStats


def test_trials_before_note_and_corrections_after():
    s = EpisodeStats()
    s.record_turn(False, 0)
    s.record_call("a", False)
    s.record_call("b", True)  # two probes
    s.record_turn(True, 0)  # experience note
    s.record_call("a", False)
    s.record_turn(False, 0)
    s.record_call("a", True)  # corrected
    s.record_call("a", True)  # not a second correction
    out = s.summary()
    assert out["trial_calls"] == 2 and out["execution_calls"] == 3
    assert out["corrections"] == 1 and out["failed_calls"] == 2 and out["wrote_experience"]


def test_without_note_all_calls_are_execution():
    s = EpisodeStats()
    s.record_turn(False, 1)
    s.record_call("a", False)
    s.record_call("b", True)  # another tool: no correction
    s.record_call("a", True)
    out = s.summary()
    assert out["trial_calls"] == 0 and out["execution_calls"] == 3
    assert out["corrections"] == 1 and out["parse_errors"] == 1
