"""Your own SFT data: OpenAI chat and ShareGPT rows from JSONL, JSON, folders, saved datasets and hub ids;
every unusable row named with its file, line and reason; nothing bad trained silently."""
import json

import pytest

from tests.conftest import FIXTURES
from toolmaster.cli import main
from toolmaster.config import build_config
from toolmaster.config_base import ConfigError
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.trainer.sft import load_examples, prepare_examples
from toolmaster.trainer.sft_data import BadRow, load_rows, parse_row

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
MALFORMED = [
    ({"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]},
     "unknown role 'wizard'"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}, "a tool call without an id"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [
        {**CALL, "function": {"name": "f", "arguments": "{not json"}}]}]}, "arguments are not JSON"),
    ({"messages": []}, "empty conversation"),
    ({"conversations": []}, "empty conversation"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "no assistant turn"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [CALL]},
                   {"role": "tool", "content": "r"}]}, "without the tool_call_id"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [CALL]},
                   {"role": "tool", "tool_call_id": "c9", "content": "r"}]}, "answers no tool call"),
    ({"text": "plain"}, "neither 'messages'"),
    ({"conversations": [{"from": "alien", "value": "x"}]}, "unknown speaker"),
    ({**GOOD, "tools": "{oops"}, "'tools' is not JSON"),
]


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("row,reason", MALFORMED)
def test_each_malformed_row_is_reported_with_its_reason(row, reason):
    parsed = parse_row(row, "f.jsonl:3")
    assert isinstance(parsed, BadRow) and parsed.where == "f.jsonl:3" and reason in parsed.reason


def test_bad_rows_are_named_by_file_and_line_and_good_ones_kept(tmp_path):
    rows = [GOOD, "{this is not json", MALFORMED[0][0], GOOD]
    good, bad = load_rows(str(_write_jsonl(tmp_path / "d.jsonl", rows)))
    assert [r.where for r in good] == [f"{tmp_path}/d.jsonl:1", f"{tmp_path}/d.jsonl:4"]
    assert [b.where for b in bad] == [f"{tmp_path}/d.jsonl:2", f"{tmp_path}/d.jsonl:3"]
    assert bad[0].reason.startswith("not JSON") and "unknown role" in bad[1].reason


def test_sharegpt_rows_become_openai_messages():
    row = {"conversations": [{"from": "human", "value": "weather?"},
                             {"from": "function_call", "value": json.dumps({"name": "w", "arguments": {"c": "x"}})},
                             {"from": "observation", "value": "sunny"}, {"from": "gpt", "value": "Sunny."}],
           "tools": json.dumps([{"name": "w", "description": "", "parameters": {}}])}
    parsed = parse_row(row, "s:1")
    assert [m["role"] for m in parsed.messages] == ["user", "assistant", "tool", "assistant"]
    call = parsed.messages[1]["tool_calls"][0]
    assert call["function"] == {"name": "w", "arguments": {"c": "x"}}
    assert parsed.messages[2]["tool_call_id"] == call["id"] and parsed.tools[0]["name"] == "w"


def test_sources_a_folder_a_json_file_a_saved_dataset_and_a_hub_id(tmp_path, monkeypatch):
    import datasets

    folder = tmp_path / "folder"
    folder.mkdir()
    _write_jsonl(folder / "a.jsonl", [GOOD, GOOD])
    (folder / "b.json").write_text(json.dumps([GOOD]))
    good, bad = load_rows(str(folder))
    assert len(good) == 3 and not bad and good[2].where == f"{folder}/b.json[0]"
    saved = tmp_path / "saved"
    datasets.Dataset.from_list([{"messages": GOOD["messages"], "tools": "[]"}]).save_to_disk(str(saved))
    assert len(load_rows(str(saved))[0]) == 1
    asked = []

    def load_dataset(name, split):
        asked.append((name, split))
        return datasets.Dataset.from_list([GOOD])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    good, _ = load_rows("someorg/agent-sft")
    assert asked == [("someorg/agent-sft", "train")] and good[0].where == "someorg/agent-sft[0]"


@pytest.mark.parametrize("name,content,message", [
    ("data.csv", "a,b\n", "not a .jsonl or .json file"),
    ("data.json", "{\"messages\": []}", "must hold a list of rows"),
    ("data.json", "not json at all", "not a JSON file"),
])
def test_a_wrong_file_type_is_a_config_error(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_rows(str(tmp_path / name))


def test_a_missing_path_is_a_config_error():
    with pytest.raises(ConfigError, match="no such file or folder"):
        load_rows("/nonexistent/data.jsonl")


def test_too_long_rows_are_dropped_and_too_many_bad_rows_refused(tmp_path, qwen_tokenizer):
    long = {"messages": [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "ok"}]}
    path = _write_jsonl(tmp_path / "d.jsonl", [GOOD] * 18 + [long, MALFORMED[0][0]])
    examples, bad = prepare_examples(str(path), qwen_tokenizer, max_tokens=128)
    assert len(examples) == 18 and [b.where.rsplit(":", 1)[1] for b in bad] == ["20", "19"]
    assert bad[1].reason.startswith("too long: ") and "> sft.max_tokens=128" in bad[1].reason
    cfg = build_config(TINY, ["sft.max_tokens=128", "sft.max_bad_fraction=0.1"])
    assert len(load_examples(str(path), qwen_tokenizer, cfg.sft)) == 18  # 2 of 20 bad: within 10%
    strict = build_config(TINY, ["sft.max_tokens=128", "sft.max_bad_fraction=0.05"])
    with pytest.raises(ConfigError, match=r"2 of 20 rows cannot be used \(1 malformed, 1 too long\)") as err:
        load_examples(str(path), qwen_tokenizer, strict.sft)
    assert f"{path}:20" in str(err.value)


def test_the_loss_falls_only_on_assistant_tokens(qwen_tokenizer):
    examples, _ = prepare_examples(str(FIXTURES / "openai_conversations.jsonl"), qwen_tokenizer, 4096)
    ids, mask = examples[0]
    trained = qwen_tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert trained == "Hello! How can I help?<|im_end|>"


def test_data_check_prints_counts_lengths_and_the_bad_rows(tmp_path, capsys):
    from tests.conftest import QWEN

    path = _write_jsonl(tmp_path / "d.jsonl", [GOOD, GOOD, MALFORMED[1][0]])
    assert main(["data", "check", str(path), "--model", str(QWEN)]) == 1
    out = capsys.readouterr().out
    assert "3 rows, 2 usable, 1 not (1 malformed, 0 too long" in out and "tokens per usable row" in out
    assert f"{path}:3: message 1: a tool call without an id" in out
    assert main(["data", "check", str(FIXTURES / "openai_conversations.jsonl"), "--model", str(QWEN)]) == 0
    assert main(["data", "check", "/nonexistent.jsonl", "--model", str(QWEN)]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_sft_with_missing_data_is_one_line_before_any_actor(tiny_model_dir, tmp_path, capsys):
    code = main(["sft", "--model", tiny_model_dir, "--data", "/nonexistent", "--run-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("toolmaster: sft data '/nonexistent': no such file") and "Traceback" not in err
