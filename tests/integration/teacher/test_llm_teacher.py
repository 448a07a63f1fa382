"""The OpenAI-compatible teacher: rendering, filtering with a scripted endpoint, every benchmark, a real vLLM server."""
import json
import re

import datasets
import pytest

from tests.conftest import TOOLHOP
from tests.fakes import FakeOpenAI
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.protocol import build_messages, render_text
from toolmaster.teacher.llm import TEACHER_GUIDE, endpoint_messages
from toolmaster.teacher.synth import synthesize


def test_endpoint_messages_render_as_the_student_sees_them():
    task = make_env(build_config(TINY).env).tasks("train", 1)[0]
    messages = build_messages(task.question) + [
        {"role": "assistant", "content": '<tool_call>\n{"name": "x", "arguments": {}}\n</tool_call>'},
        {"role": "tool", "content": "error: a"}, {"role": "tool", "content": "error: b"}]
    as_sent = render_text(endpoint_messages(messages, task.schemas))
    assert as_sent.replace(TEACHER_GUIDE, "") == render_text(messages, task.schemas)


def _question(messages) -> str:
    return next(m["content"] for m in messages
                if m["role"] == "user" and not m["content"].startswith("<tool_response>"))


def test_scripted_endpoint_good_records_kept_bad_ones_dropped(tmp_path):
    """Turn 1 trials the first listed tool bare; turn 2 answers, correctly for even tasks only."""
    tasks = make_env(build_config(TINY).env).tasks("train", 6)
    order = {t.question: i for i, t in enumerate(tasks)}

    def reply(messages):
        system, question = messages[0]["content"], _question(messages)
        if messages[-1]["content"].startswith("<tool_response>"):
            i = order[question]
            return f"<answer>{tasks[i].reference if i % 2 == 0 else 'wrong'}</answer>"
        tool = json.loads(re.search(r"<tools>\n(.*)", system).group(1))["name"]
        return f'<tool_call>\n{{"name": "{tool}", "arguments": {{}}}}\n</tool_call>'

    with FakeOpenAI(reply) as fake:
        cfg = build_config(TINY, ["synth.teacher=openai", "synth.num_tasks=6",
                                f"synth.endpoint.base_url={fake.base_url}"])
        summary = synthesize(cfg, tmp_path)
    assert summary["kept"] == 3 and summary["dropped_reasons"] == {"incorrect": 3} and summary["teacher"] == "openai"
    assert len(fake.requests) == 12 and TEACHER_GUIDE in fake.requests[0][0]["content"]
    rows = datasets.load_from_disk(str(tmp_path))
    assert sorted(r["task_id"] for r in rows) == sorted(tasks[i].id for i in (0, 2, 4))
    row = rows[0]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert TEACHER_GUIDE not in row["messages"][0]["content"]  # stored in the student's format


def _finish_or_answer(messages):
    system = messages[0]["content"]
    if '"name": "Finish"' in system:
        return ('<tool_call>\n{"name": "Finish", "arguments": {"return_type": "give_answer", "final_answer": "42"}}'
                '\n</tool_call>')
    return "<answer>42</answer>"


@pytest.mark.parametrize("env_name", ["toolhop", "stabletoolbench", "tmdb"])
def test_llm_teacher_runs_on_every_benchmark(tmp_path, env_name):
    with FakeOpenAI(_finish_or_answer) as fake:
        cfg = build_config(TINY, [f"env.name={env_name}", f"env.toolhop.data={TOOLHOP}", "synth.split=test",
                                "synth.num_tasks=3", "synth.teacher=openai", f"synth.endpoint.base_url={fake.base_url}",
                                "synth.max_tokens=100000"])  # RapidAPI tool lists are long
        summary = synthesize(cfg, tmp_path)
    assert summary["num_tasks"] == 3 and summary["kept"] + summary["dropped"] == 3
    if env_name == "stabletoolbench":  # ungraded without a judge: a clean Finish is kept
        assert summary["kept"] == 3
    else:  # "42" answers none of these, and calls no TMDB endpoint
        assert summary["dropped_reasons"] == {"incorrect": 3}


def test_llm_teacher_against_a_real_vllm_openai_server(tmp_path, model_server):
    """The tiny model behind vLLM's OpenAI server: the pipeline runs end to end (its records mostly get dropped)."""
    cfg = build_config(TINY, ["synth.teacher=openai", "synth.num_tasks=4",
                            f"synth.endpoint.base_url={model_server.base_url}",
                            "synth.endpoint.model=tiny", "synth.endpoint.max_tokens=48", "env.max_turns=3"])
    summary = synthesize(cfg, tmp_path)
    assert summary["num_tasks"] == 4 and summary["kept"] + summary["dropped"] == 4
    assert set(summary["dropped_reasons"]) <= {"no_answer", "parse_error", "incorrect", "too_long"}
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
