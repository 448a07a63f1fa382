import json
import re

import pytest

from toolmaster.agent.loop import run_episodes
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.envs.toolworld.quirks import IN_DOMAIN_KINDS, OOD_KINDS
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.teacher.scripted import ScriptedTeacher, _PerToolTeacher
from toolmaster.tools.base import ToolRunner


def _names(tasks):
    tools, params, entities = set(), set(), set()
    for t in tasks:
        for tool in t.tools:
            tools.add(tool.name)
            params.update(tool.schema["parameters"]["properties"])
            entities.update(re.findall(r"'([a-z]+)'", tool.executor.source.split("\n")[1]))
        entities.update(t.metadata["chain"])
    return tools, params, entities


def test_same_seed_same_tasks_and_seed_changes_them(cfg):
    env = make_env(cfg.env)
    a, b = env.tasks("train", 20), env.tasks("train", 20)
    assert a == b and [t.metadata for t in a] == [t.metadata for t in b]
    other = make_env(build_config(TINY, ["env.toolworld.seed=1"]).env).tasks("train", 20)
    assert [t.question for t in other] != [t.question for t in a]


def test_test_split_disjoint_from_train(cfg):
    env = make_env(cfg.env)
    train = _names(env.tasks("train", 300))
    for split in ("test", "test_ood"):
        held_out = _names(env.tasks(split, 300))
        for kind, tr, te in zip(("tool names", "parameter names", "entities"), train, held_out):
            assert not tr & te, f"{split} shares {kind} with train: {sorted(tr & te)[:5]}"


def test_val_split_has_its_own_tasks_on_unseen_tools(cfg):
    """val (for choosing a checkpoint) draws names and rules like test, never train's, in tasks of its own."""
    env = make_env(cfg.env)
    val, test = env.tasks("val", 200), env.tasks("test", 200)
    assert all(t.id.startswith("toolworld-val-") and t.metadata["split"] == "val" for t in val)
    assert not {t.question for t in val} & {t.question for t in test}
    for kind, tr, va in zip(("tool names", "parameter names", "entities"), _names(env.tasks("train", 300)),
                            _names(val)):
        assert not tr & va, f"val shares {kind} with train"
    assert {q["kind"] for t in val for q in t.metadata["quirks"].values()} - {"none"} == set(IN_DOMAIN_KINDS)


def test_quirk_kinds_and_values_per_split(cfg):
    env = make_env(cfg.env)

    def quirks(split):
        return [q for t in env.tasks(split, 200) for q in t.metadata["quirks"].values() if q["kind"] != "none"]

    train, test, ood = quirks("train"), quirks("test"), quirks("test_ood")
    assert {q["kind"] for q in train} == set(IN_DOMAIN_KINDS) == {q["kind"] for q in test}
    assert {q["kind"] for q in ood} == set(OOD_KINDS)
    # same kinds, new behaviour: prefixes, suffixes and option values of test tools are never train's
    for kind in ("prefix", "suffix", "enum"):
        assert not {q["value"] for q in train if q["kind"] == kind} & {q["value"] for q in test if q["kind"] == kind}


def test_difficulty_knobs(cfg):
    c = build_config(TINY, ["env.toolworld.min_hops=3", "env.toolworld.max_hops=3", "env.toolworld.distractors=2",
                          "env.toolworld.quirk_rate=0"])
    for t in make_env(c.env).tasks("train", 10):
        assert t.metadata["hops"] == 3 and len(t.tools) == 5
        assert all(q["kind"] == "none" for q in t.metadata["quirks"].values())


def test_tools_reveal_their_rule_in_errors(cfg):
    env = make_env(cfg.env)
    runner = ToolRunner.from_config(cfg.sandbox)
    try:
        seen = set()
        for task in env.tasks("train", 40):
            first = task.metadata["plan"][0]
            quirk = task.metadata["quirks"][first]
            if quirk["kind"] == "none" or quirk["kind"] in seen:
                continue
            seen.add(quirk["kind"])
            param = task.metadata["params"][first]
            args = {param: task.metadata["chain"][0]}
            if quirk["kind"] == "enum":
                args[quirk["option"]] = "default"
            result = runner.run(task.tool(first), args)
            assert not result.ok and quirk["value"] in result.content
        assert seen == set(IN_DOMAIN_KINDS)
    finally:
        runner.close()


@pytest.mark.parametrize("trial_order", ["per_tool", "upfront"])  # per_tool: the tiny model's corpus teacher
def test_scripted_teacher_trajectories_replay_correct(cfg, trial_order):
    teacher = _PerToolTeacher if trial_order == "per_tool" else ScriptedTeacher
    env = make_env(cfg.env)
    runner = ToolRunner.from_config(cfg.sandbox)
    try:
        for split in ("train", "test", "test_ood"):
            tasks = env.tasks(split, 40)
            episodes = run_episodes(teacher(trial=True, mistake_rate=0.5), tasks, env, runner,
                                    max_turns=cfg.env.max_turns)
            assert all(e.correct for e in episodes), [e.answer for e in episodes if not e.correct]
            assert sum(e.stats["corrections"] for e in episodes) > 0
            # every plan tool is tried twice (bare, then the plain value) before its first real use
            assert all(e.stats["trial_calls"] == 2 * t.metadata["hops"] for e, t in zip(episodes, tasks))
            if trial_order == "upfront":  # the trial phase comes first: one note, after the last trial call
                for e in episodes:
                    notes = [i for i, m in enumerate(e.messages)
                             if m["role"] == "assistant" and "<experience>" in m["content"]]
                    calls = [i for i, m in enumerate(e.messages)
                             if m["role"] == "assistant" and "<tool_call>" in m["content"]]
                    assert len(notes) == 1 and notes[0] == calls[e.stats["trial_calls"]]  # opens the first real call
            # replay: re-running the recorded calls through fresh tools gives the recorded observations
            for ep, task in zip(episodes[:10], tasks[:10]):
                for i, msg in enumerate(ep.messages):
                    if msg["role"] == "assistant" and "<tool_call>" in msg["content"]:
                        body = msg["content"].split("<tool_call>\n")[1].split("\n</tool_call>")[0]
                        call = json.loads(body)
                        missing = set(task.tool(call["name"]).schema["parameters"]["required"]) - set(call["arguments"])
                        if missing:  # a bare trial call: the parser's schema check names what the tool takes
                            assert all(f"missing required argument '{m}'" in ep.messages[i + 1]["content"]
                                       for m in missing)
                            continue
                        replayed = runner.run(task.tool(call["name"]), call["arguments"])
                        assert replayed.content == ep.messages[i + 1]["content"]
    finally:
        runner.close()


def test_reports_break_success_down_by_hops_and_first_rule(cfg):
    from toolmaster.evaluation.report import build_report

    env = make_env(cfg.env)
    tasks = env.tasks("test", 60)
    assert {t.metadata["group"].split("/")[0] for t in tasks} == {"1-hop", "2-hop"}
    # a policy that solves exactly the one-hop tasks scores 1 on every one-hop group and 0 on the rest
    records = [{"grade": float(t.metadata["hops"] == 1), "correct": t.metadata["hops"] == 1, "finish_reason": "answer",
                "stats": {}, "episode_id": str(i)} for i, t in enumerate(tasks)]
    breakdown = build_report(cfg, env, tasks, records, 0.0)["breakdown"]
    assert breakdown == {f"group={t.metadata['group']}": float(t.metadata["hops"] == 1) for t in tasks}
