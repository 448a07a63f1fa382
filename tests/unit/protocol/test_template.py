"""The model's own chat template: on 20 hand-written OpenAI-format conversations, the ids this project
produces (as SFT rows, and as rollout prompts built turn by turn) are the official Qwen2.5 template's text
tokenized; the built-in format of the tokenizers made here stays byte-identical."""
import json

import pytest

from tests.conftest import FIXTURES
from toolmaster.protocol import build_messages, render_text
from toolmaster.protocol.template import (
    BuiltinChat,
    TemplateChat,
    TemplateError,
    bare_tools,
    chat_format,
    normalized,
    prompt_delta,
)
from toolmaster.rollout.trajectory import Trajectory
from toolmaster.trainer.sft import sft_example
from toolmaster.trainer.sft_data import load_rows

CONVERSATIONS = FIXTURES / "openai_conversations.jsonl"


def _rows():
    rows, bad = load_rows(str(CONVERSATIONS))
    assert not bad and len(rows) == 20
    return rows


def _official(tokenizer, messages, tools, add_generation_prompt=False) -> str:
    """The official template applied as vLLM's server applies it: string arguments decoded to objects."""
    for m in messages:
        for call in m.get("tool_calls") or []:
            if isinstance(call["function"]["arguments"], str):
                call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return tokenizer.apply_chat_template([{**m, "content": m["content"] or ""} for m in messages],
                                         tools=tools or None, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_the_fixture_covers_what_a_real_dataset_holds():
    raw = [json.loads(line) for line in CONVERSATIONS.read_text().splitlines()]
    calls = [c for r in raw for m in r["messages"] for c in m.get("tool_calls") or []]
    assert any(isinstance(c["function"]["arguments"], str) for c in calls)
    assert any(isinstance(c["function"]["arguments"], dict) for c in calls)
    assert any(len(m.get("tool_calls") or []) > 1 for r in raw for m in r["messages"])
    assert any(m["content"] is None for r in raw for m in r["messages"])
    assert any(r["messages"][0]["role"] != "system" for r in raw if r.get("tools"))
    texts = [m["content"] or "" for r in raw for m in r["messages"]]
    assert any(t.startswith("error:") for t in texts) and any("<experience>" in t for t in texts)


def test_sft_rows_are_the_official_template_tokenized(qwen_tokenizer):
    chat = chat_format(qwen_tokenizer)
    assert isinstance(chat, TemplateChat) and chat.end_of_turn == "<|im_end|>"
    for row in _rows():
        ids, mask = sft_example(qwen_tokenizer, row.messages, row.tools, chat)
        text = _official(qwen_tokenizer, json.loads(json.dumps(row.messages)), row.tools)
        through_last_turn = text[:text.rindex("<|im_end|>") + len("<|im_end|>")]
        assert ids == _ids(qwen_tokenizer, through_last_turn), row.where
        # the loss falls exactly on the assistant turns, each through its <|im_end|>
        trained = qwen_tokenizer.decode([t for t, m in zip(ids, mask) if m])
        turns = [part.split("<|im_end|>")[0] + "<|im_end|>"
                 for part in through_last_turn.split("<|im_start|>assistant\n")[1:]]
        assert trained == "".join(turns), row.where


def test_rollout_prompts_built_turn_by_turn_are_the_official_template_tokenized(qwen_tokenizer):
    chat = chat_format(qwen_tokenizer)
    for row in _rows():
        traj = Trajectory("e")
        for k, message in enumerate(row.messages):
            if message["role"] != "assistant":
                continue
            traj.add_prompt(qwen_tokenizer, chat, row.messages[:k], row.tools)
            prompt = _official(qwen_tokenizer, json.loads(json.dumps(row.messages[:k])), row.tools, True)
            assert traj.token_ids == _ids(qwen_tokenizer, prompt), (row.where, k)
            # the policy "samples" this turn: the template's own text for it, through <|im_end|>
            upto = chat.render(row.messages[:k + 1], row.tools)
            turn = upto[len(prompt):upto.rindex("<|im_end|>") + len("<|im_end|>")]
            traj.extend(_ids(qwen_tokenizer, turn), sampled=True)
        assert sum(traj.loss_mask) > 0


def test_the_builtin_format_is_qwens_with_bare_tool_schemas(qwen_tokenizer):
    """The built-in template is Qwen2.5's format, except that it writes each tool as its bare schema (what the
    tiny model was trained on) where Qwen's writes the OpenAI object, and that without a system message Qwen
    writes its own default one."""
    builtin, compared = BuiltinChat(), 0
    for row in _rows():
        if row.messages[0]["role"] == "system":
            official = qwen_tokenizer.apply_chat_template(normalized(row.messages), tools=bare_tools(row.tools) or None,
                                                          tokenize=False)
            assert builtin.render(row.messages, row.tools) == official, row.where
            compared += 1
    assert compared >= 12


def test_the_builtin_format_renders_protocol_conversations_as_before(tiny_model_dir):
    """The tiny model's tokenizer and its whole build rest on render_text: the built-in format is it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = chat_format(tokenizer)
    assert isinstance(chat, BuiltinChat)
    tools = [{"name": "get_velo", "description": "d", "parameters": {"type": "object", "properties": {}}}]
    messages = build_messages("q?") + [{"role": "assistant", "content": "<tool_call>\n{}\n</tool_call>"},
                                       {"role": "tool", "content": "error: x"}]
    for gen in (False, True):
        assert chat.render(messages, tools, gen) == render_text(messages, tools, gen)
        wrapped = [{"type": "function", "function": t} for t in tools]
        assert chat.render(messages, wrapped, gen) == render_text(messages, tools, gen)


def test_a_template_that_rewrites_earlier_turns_is_refused(qwen_tokenizer):
    class Forgetful(TemplateChat):  # drops earlier assistant turns' text, as reasoning templates do
        def render(self, messages, tools=None, add_generation_prompt=False):
            last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
            kept = [m if m["role"] != "assistant" or i == last else {**m, "content": ""}
                    for i, m in enumerate(messages)]
            return super().render(kept, tools, add_generation_prompt)

    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    chat = Forgetful(qwen_tokenizer)
    with pytest.raises(TemplateError, match="re-renders earlier turns"):
        sft_example(qwen_tokenizer, messages, [], chat)
    assert prompt_delta(chat, messages[:3], [], continuing=False).endswith("assistant\n")


def test_a_tokenizer_without_a_template_is_named(qwen_tokenizer):
    import copy

    bare = copy.copy(qwen_tokenizer)
    bare.chat_template = None
    with pytest.raises(TemplateError, match="has no chat_template"):
        chat_format(bare, "my-model")


def test_string_arguments_are_decoded_and_content_parts_joined():
    out = normalized([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                      {"role": "assistant", "content": None, "tool_calls": [
                          {"id": "1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]}])
    assert out[0]["content"] == "ab" and out[1]["content"] == ""
    assert out[1]["tool_calls"][0]["function"]["arguments"] == {"x": 1}
