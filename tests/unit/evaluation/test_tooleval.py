"""StableToolBench's evaluator (toolmaster.evaluation.tooleval) against a scripted judge, on a fixture checkout.

The judge is a fake at the client interface (``call_function``): it records what it was asked and answers by
script, so each test shows which questions the official procedure asks and how it reads the answers.
"""
import json
import random

import pytest

from tests.conftest import FIXTURES
from toolmaster.agent.episode import Episode
from toolmaster.config import build_config
from toolmaster.envs.base import Task
from toolmaster.envs.stabletoolbench import FINISH_SCHEMA
from toolmaster.evaluation import tooleval
from toolmaster.evaluation.tooleval import JudgeReplyError, ToolEvalJudge
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.tools.spec import Tool

CHECKOUT = FIXTURES / "stabletoolbench_checkout"
WEATHER = {"name": "weather_for_demo", "description": "Subfunction of the tool \"demo\": weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TOOLS = [WEATHER, FINISH_SCHEMA]
QUERY = "What is the weather in Paris?"


class ScriptedJudge:
    """``call_function`` answering ``script(function name, prompt) -> arguments (str, dict or None)``."""

    def __init__(self, script):
        self.script = script
        self.calls = []  # (function name, prompt, function schema, temperature, max_tokens)

    def call_function(self, messages, function, *, max_tokens=None, temperature=None):
        assert len(messages) == 1 and messages[0]["role"] == "user"
        self.calls.append((function["name"], messages[0]["content"], function, temperature, max_tokens))
        reply = self.script(function["name"], messages[0]["content"])
        return (json.dumps(reply) if isinstance(reply, dict) else reply), "thinking"

    def names(self):
        return [c[0] for c in self.calls]


def judge(script, seed=0):
    return ToolEvalJudge(tooleval.load_evaluator(CHECKOUT), ScriptedJudge(script), rng=random.Random(seed))


def call(name, **arguments):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


def messages(final="Sunny, 21 C in Paris.", finish=True):
    out = [{"role": "system", "content": "sys"}, {"role": "user", "content": QUERY},
           {"role": "assistant", "content": "Let me look.\n" + call("weather_for_demo", city="Paris")},
           {"role": "tool", "content": '{"error": "", "response": "sunny, 21"}'}]
    if finish:
        out.append({"role": "assistant", "content": call("Finish", return_type="give_answer", final_answer=final)})
    return out


def example(final="Sunny, 21 C in Paris.", finish=True):
    return tooleval.converted_answer(QUERY, TOOLS, messages(final, finish), final if finish else "")


def label(status, reason="because"):
    return {"answer_status": status, "reason": reason}


# --- the checkout and the converted answer ---------------------------------------------------------------------


def test_evaluator_is_read_from_the_checkout(tmp_path):
    ev = tooleval.load_evaluator(CHECKOUT)
    assert set(ev.templates) == set(tooleval.FUNCTIONS) and ev.temperature == 0.2 and ev.max_tokens == 1000
    assert ev.templates["check_answer_status"] == "\nFIXTURE-FINAL\nQ: {query}\nA: {answer}\n"
    with pytest.raises(FileNotFoundError, match="config.yaml is missing"):
        tooleval.load_evaluator(tmp_path)


def test_episode_becomes_a_converted_answer_with_finish_as_its_last_step():
    ex = example()
    answer = ex["answer"]
    assert list(answer) == ["method", "total_steps", "final_answer", "answer_details"]
    assert answer["total_steps"] == 4  # system, user, the weather call, Finish
    system = answer["answer_details"][0]
    assert (system["role"], system["next"][0]["role"]) == ("system", "user")
    first = system["next"][0]["next"][0]
    assert first["role"] == "tool" and first["message"]["name"] == "weather_for_demo"
    assert first["message"]["response"] == '{"error": "", "response": "sunny, 21"}'
    steps, final = tooleval.steps(ex)
    assert steps.startswith("Step 1: {'name': 'weather_for_demo'") and "'name': 'Finish'" in final
    # an answer in <answer> tags is ToolMaster's other finish; a turn without calls is an assistant node
    msgs = messages(finish=False) + [{"role": "assistant", "content": "thinking only"},
                                     {"role": "tool", "content": "noted"},
                                     {"role": "assistant", "content": "<answer>Sunny</answer>"}]
    details = tooleval.converted_answer(QUERY, TOOLS, msgs, "Sunny")["answer"]["answer_details"][0]
    chain = []
    while details["next"]:
        details = details["next"][0]
        chain.append(details["role"])
    assert chain == ["user", "tool", "assistant", "tool"] and "'name': 'Finish'" in tooleval.steps(
        tooleval.converted_answer(QUERY, TOOLS, msgs, "Sunny"))[1]


# --- SoPR: solved, unsolved, unsure, rounds, malformed replies -------------------------------------------------


def test_solved_final_answer_is_asked_once_with_the_checkouts_template():
    j = judge(lambda name, prompt: label("Solved"))
    assert j.pass_label(example()) == "Solved"
    [(name, prompt, function, temperature, max_tokens)] = j.client.calls
    assert name == "check_answer_status"
    assert prompt == f"\nFIXTURE-FINAL\nQ: {QUERY}\nA: Sunny, 21 C in Paris.\n"  # the final answer only
    assert "reason" in function["parameters"]["required"] and function["parameters"]["properties"]["reason"]
    assert (temperature, max_tokens) == (0.2, 1000)  # the evaluator's config.yaml


@pytest.mark.parametrize("case", ["no_finish", "empty", "give_up_text"])
def test_unsolved_without_asking_the_judge(case):
    j = judge(lambda name, prompt: pytest.fail("the judge was asked"))
    ex = {"no_finish": tooleval.converted_answer(QUERY, TOOLS, messages(finish=False), "Sunny"),  # last step no Finish
          "empty": example(final=""),
          "give_up_text": example(final="give_up_and_restart")}[case]
    assert j.pass_label(ex) == "Unsolved" and j.client.calls == []


def test_unsolved_label_from_the_judge():
    j = judge(lambda name, prompt: label("Unsolved"))
    assert j.pass_label(example()) == "Unsolved" and j.client.names() == ["check_answer_status"]


@pytest.mark.parametrize("details_label", ["Solved", "Unsure", "Unsolved"])
def test_unsure_is_asked_again_with_the_whole_answer_and_that_label_stands(details_label):
    j = judge(lambda name, prompt: label("Unsure" if name == "check_answer_status" else details_label))
    ex = example()
    assert j.pass_label(ex) == details_label
    assert j.client.names() == ["check_answer_status", "parse_answer_status"]
    prompt = j.client.calls[1][1]
    assert prompt == f"\nFIXTURE-DETAILS\nQ: {QUERY}\nA: {json.dumps(ex['answer'])}\n"
    assert '"response": "{\\"error\\": \\"\\", \\"response\\": \\"sunny, 21\\"}"' in prompt  # the trace goes too


def test_rounds_aggregate_as_eval_pass_rate_does():
    figures = tooleval.pass_rate({"q1": ["Solved", "Unsure", "Unsolved"], "q2": ["Solved", "Solved", "Solved"]})
    assert figures["sopr_per_round"] == [100.0, 75.0, 50.0]  # each round over all queries; Unsure counts 0.5
    assert figures["sopr"] == pytest.approx(75.0)
    assert figures["sopr_std"] == pytest.approx(100 * (0.25 ** 2 * 2 / 3) ** 0.5)  # population std over rounds
    replies = iter(["Solved", "Unsure", "Unsure", "Unsolved"])  # round 1: Unsure, and Unsure again in detail

    def script(name, prompt):
        return label(next(replies))
    grade, rounds = tooleval.sopr_judgments(judge(script), _task(), _episode(), 3)
    assert rounds == {"sopr_round_0": 1.0, "sopr_round_1": 0.5, "sopr_round_2": 0.0}
    assert grade == pytest.approx(0.5)


def _episode(finish=True):
    return Episode("e0", "t", messages(finish=finish), [], answer="Sunny, 21 C in Paris." if finish else None,
                   finish_reason="answer" if finish else "max_turns")


def _task(**metadata):
    return Task("t", QUERY, tuple(Tool(s, None) for s in TOOLS), "", metadata=metadata)


def test_malformed_replies_are_asked_again_then_fail():
    replies = iter(["not json", json.dumps({"answer_status": "Solved"}),  # no reason: required when asked for
                    json.dumps(label("Maybe")), json.dumps(label("Solved"))])
    j = judge(lambda name, prompt: next(replies))
    j.attempts = 4
    assert j.pass_label(example()) == "Solved" and len(j.client.calls) == 4
    j = judge(lambda name, prompt: None)  # no tool call at all
    with pytest.raises(JudgeReplyError, match="check_answer_status could not be read in 3 attempts"):
        j.pass_label(example())
    assert len(j.client.calls) == 3


# --- SoWR ------------------------------------------------------------------------------------------------------


def _pair(ref_final, cand_final):
    return {"q": example(ref_final)}, {"q": example(cand_final)}


def by_answer(statuses, pick=None):
    """A judge labeling each final answer from ``statuses``; select_better_answer picks the answer holding
    ``pick()`` (a text) by its position in the prompt."""
    def script(name, prompt):
        if name == "check_answer_status":
            return {"answer_status": next(v for k, v in statuses.items() if f"A: {k}\n" in prompt)}
        if name == "parse_answer_status":  # an Unsure answer asked again: it stays what the script says
            return {"answer_status": next(v for k, v in statuses.items() if f'"final_answer": "{k}"' in prompt)}
        if name == "check_task_solvable":
            return {"task_status": "Solvable"}
        text = pick()
        first, second = prompt.split("\n0: ")[1].split("\n1: ")
        return {"index": 0 if text in first else 1, "reason": "r"}
    return script


@pytest.mark.parametrize("seed", range(4))  # whatever the shuffle, the Solved answer wins
def test_sowr_win_and_loss_follow_the_solved_answer(seed):
    ref, cand = _pair("REF answer", "CAND answer")
    win = tooleval.win_rate(judge(by_answer({"REF answer": "Unsolved", "CAND answer": "Solved"}), seed),
                            ["q"], ref, cand)
    assert (win["sowr"], win["tie_rate"], win["lose_rate"]) == (100.0, 0.0, 0.0)
    loss = tooleval.win_rate(judge(by_answer({"REF answer": "Solved", "CAND answer": "Unsure"}), seed),
                             ["q"], ref, cand)
    assert (loss["sowr"], loss["lose_rate"]) == (0.0, 100.0)


def test_sowr_tie_counts_zero_and_both_unsolved_asks_solvability_then_selection():
    ref, cand = _pair("REF answer", "CAND answer")
    picks = iter(["CAND answer", "REF answer"])  # one round each: a tie after 2 rounds
    j = judge(by_answer({"REF answer": "Unsolved", "CAND answer": "Unsolved"}, lambda: next(picks)))
    tie = tooleval.win_rate(j, ["q"], ref, cand, rounds=2)
    assert (tie["sowr"], tie["tie_rate"]) == (0.0, 100.0) and tie["outcomes"] == {"q": "tie"}
    assert j.client.names() == ["check_answer_status", "check_answer_status", "check_task_solvable",
                                "select_better_answer"] * 2
    task_prompt = j.client.calls[2][1]
    assert '"available_tools": [{"name": "weather_for_demo"}, {"name": "Finish"}]' in task_prompt  # tools cut


def test_sowr_two_solved_select_and_missing_answers_go_to_the_other_side():
    ref = {"a": example("REF a"), "b": example("REF b"), "c": example("REF c")}
    cand = {"a": example("CAND a"), "b": example("CAND b"), "d": example("CAND d")}
    j = judge(by_answer({k: "Solved" for k in ("REF a", "CAND a", "REF b", "CAND b")},
                        lambda: "CAND a" if "CAND a" in j.client.calls[-1][1] else "REF b"))
    result = tooleval.win_rate(j, ["a", "b", "c", "d"], ref, cand)
    assert result["outcomes"] == {"a": "win", "b": "lose", "c": "lose", "d": "win"}
    assert result["sowr"] == 50.0 and result["tie_rate"] == 0.0


def test_identical_solved_answers_are_not_sent_to_selection():
    ref, cand = _pair("same", "same")
    j = judge(by_answer({"same": "Solved"}, lambda: pytest.fail("selection asked")))
    tooleval.win_rate(j, ["q"], ref, cand, rounds=1)
    assert j.client.names() == ["check_answer_status", "check_answer_status"]


# --- the report ------------------------------------------------------------------------------------------------


def test_report_names_judge_and_samples_and_gives_sowr_per_group(tmp_path):
    from toolmaster.evaluation.report import _markdown, build_report

    (tmp_path / "G1_instruction.json").write_text(json.dumps({"7": example("REF answer")}))
    cfg = build_config(TINY, ["env.name=stabletoolbench", "env.stabletoolbench.groups=[G1_instruction]",
                              "env.judge.base_url=http://judge.invalid/v1", "env.judge.model=judge-7b",
                              f"env.judge.stabletoolbench_dir={CHECKOUT}",
                              f"env.judge.reference_answers={tmp_path}"])
    from toolmaster.envs import make_env

    env = make_env(cfg.env)
    scripted = judge(by_answer({"REF answer": "Unsolved", "Sunny, 21 C in Paris.": "Solved"}))
    scripted.client.script = _with_reason(scripted.client.script)
    env._judge = scripted
    task = _task(group="G1_instruction", query_id=7)
    episode = _episode()
    grade = env.grade(task, episode)
    episode.grade, episode.judgments = grade, env.judgments(task, episode)
    assert grade == 1.0 and episode.judgments == {f"sopr_round_{i}": 1.0 for i in range(3)}  # 3 rounds by default
    record = {**episode.to_record(), "messages": episode.messages}
    report = build_report(cfg, env, [task], [record], 1.0)  # SoWR asks the env's judge (the scripted one)
    assert report["sopr"] == 100.0 and report["sopr_std"] == 0.0
    assert report["judge"]["model"] == "judge-7b" and report["judge"]["samples"] == 3
    assert "StableToolBench tooleval" in report["judge"]["procedure"]
    assert report["sowr"] == 100.0 and report["sowr_detail"]["groups"]["G1_instruction"]["rounds"] == 3
    text = _markdown(report)
    assert "Judge: `judge-7b`, 3 sample(s) per answer" in text and "| G1_instruction | 100.000 |" in text


def _with_reason(script):
    def wrapped(name, prompt):
        reply = script(name, prompt)
        return {**reply, "reason": "r"} if name in ("check_answer_status", "parse_answer_status") else reply
    return wrapped
