"""A model of the real shape (Qwen2.5-Instruct's 151,665-token tokenizer and official chat template, random
weights, small) through synthesis, SFT on an OpenAI-format JSONL, two GRPO steps and evaluation on the real
engines. Every trajectory is checked against the official template: each span the policy did not sample has
exactly the ids of the template's text for that conversation, and the loss mask covers exactly the sampled
turns."""
import json
from pathlib import Path

from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.teacher.synth import synthesize
from toolmaster.trainer.grpo import start_grpo
from toolmaster.trainer.sft import train_sft

EOT = "<|im_end|>"
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "openai_conversations.jsonl"


def _runs(mask):
    """(start, end, sampled) runs of the loss mask."""
    runs, start = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            runs.append((start, i, bool(mask[start])))
            start = i
    return runs


def _official(tokenizer, messages, tools, add_generation_prompt=False) -> str:
    return tokenizer.apply_chat_template(messages, tools=[{"type": "function", "function": t} for t in tools],
                                         tokenize=False, add_generation_prompt=add_generation_prompt)


def check_against_the_template(tokenizer, record, tools) -> None:
    """The record's ids, span by span, against the official template's rendering of its conversation."""
    ids, mask, messages = record.token_ids, record.loss_mask, record.messages
    turns = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
    runs = _runs(mask)
    sampled = [(lo, hi) for lo, hi, s in runs if s]
    unsampled = [(lo, hi) for lo, hi, s in runs if not s]
    assert len(sampled) == len(turns) and unsampled[0][0] == 0 and ids, record.episode_id
    eot = tokenizer.convert_tokens_to_ids(EOT)
    for n, k in enumerate(turns):
        lo, hi = unsampled[n]
        prompt = _official(tokenizer, messages[:k], tools, add_generation_prompt=True)
        if n == 0:
            expected = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        else:  # from the end of the previous turn (its <|im_end|>) through this turn's generation prompt
            before = _official(tokenizer, messages[:turns[n - 1] + 1], tools)
            end = before.rindex(EOT) + len(EOT)
            assert prompt.startswith(before[:end])
            cut = ids[sampled[n - 1][1] - 1] != eot  # a turn cut by max_tokens: closed by an unsampled <|im_end|>
            expected = [eot] * cut + tokenizer(prompt[end:], add_special_tokens=False)["input_ids"]
        assert ids[lo:hi] == expected, (record.episode_id, n)
        # the sampled turn is the assistant message the loop recorded
        s_lo, s_hi = sampled[n]
        text = tokenizer.decode(ids[s_lo:s_hi])
        assert text in (messages[k]["content"], messages[k]["content"] + EOT), (record.episode_id, n)
    assert len(unsampled) in (len(turns), len(turns) + 1)  # at most a closing <|im_end|> after the last turn
    if len(unsampled) > len(turns):
        assert ids[unsampled[-1][0]:] == [eot]


def test_a_real_shape_model_through_synthesis_sft_grpo_and_evaluation(fleets, real_shape_model_dir, tmp_path):
    """Random weights rarely write a well-formed call, so rollouts and evaluation decode under the tool-call
    constraint (vLLM structured outputs): the episodes make parsed calls to their tasks' tools and go on over
    several turns through the tools' observations."""
    from transformers import AutoTokenizer

    from toolmaster.envs import make_env
    from toolmaster.evaluation.runner import evaluate

    tokenizer = AutoTokenizer.from_pretrained(real_shape_model_dir)
    cfg = build_config(TINY, [
        "synth.num_tasks=2", "sft.steps=4", "sft.batch_size=4", "sft.lr=1e-2", "sft.warmup_steps=1",
        "sft.max_tokens=2048", "grpo.steps=2", "grpo.prompts_per_step=2", "grpo.group_size=2",
        "env.max_turns=3", "rollout.generation.max_new_tokens=128", "eval.generation.max_new_tokens=128",
        "rollout.generation.constrain=tool_calls", "eval.generation.constrain=tool_calls",
        "eval.num_tasks=2", "rollout.num_workers=1",
        "learner.max_tokens_per_microbatch=24576"])  # the model's whole context fits one micro-batch
    # SFT data in the OpenAI format: the scripted teacher's trajectories (with the turns trials and
    # execution need) and the hand-written conversations of tests/fixtures
    summary = synthesize(cfg.model_copy(update={"env": cfg.env.model_copy(update={"max_turns": 9})}),
                         str(tmp_path / "synth"), tokenizer)
    assert summary["kept"] == 2
    import datasets

    rows = [json.dumps({"messages": r["messages"], "tools": [{"type": "function", "function": t}
                                                             for t in json.loads(r["tools"])]})
            for r in datasets.load_from_disk(str(tmp_path / "synth"))]
    jsonl = tmp_path / "sft.jsonl"
    jsonl.write_text("\n".join(rows + FIXTURE.read_text().splitlines()) + "\n")
    fleet = fleets.get(cfg, real_shape_model_dir)

    sft_cfg = cfg.model_copy(deep=True)
    sft_cfg.run_dir = str(tmp_path / "sft")
    sft = train_sft(sft_cfg, real_shape_model_dir, str(jsonl), learners=fleet.learners)
    losses = [h["loss"] for h in sft["history"]]
    assert losses[-1] < losses[0], losses
    checkpoint = sft["checkpoint"]
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):  # every tokenizer file travels
        assert (tmp_path / "sft" / "checkpoints" / "latest" / name).read_bytes() == \
            (Path(real_shape_model_dir) / name).read_bytes()

    grpo_cfg = cfg.model_copy(deep=True)
    grpo_cfg.run_dir = str(tmp_path / "grpo")
    trainer = start_grpo(grpo_cfg, checkpoint, fleet=fleet)
    records = []
    try:
        for _ in range(2):
            trainer.step()
            records += trainer.last_records
    finally:
        trainer.close()
    env = make_env(cfg.env)
    tools = {t.id: t.schemas for t in env.tasks("train", 4)}
    assert len(records) == 8 and all(r.error is None for r in records)
    for record in records:
        check_against_the_template(tokenizer, record, tools[record.task_id])
    calls = sum(r.stats["trial_calls"] + r.stats["execution_calls"] for r in records)
    assert calls >= len(records) and sum(r.stats["parse_errors"] for r in records) == 0, \
        [r.stats for r in records]
    assert any(r.stats["turns"] >= 2 for r in records)  # conversations that went on after a tool's answer

    report = evaluate(cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"policy": "model",
                                                                                  "model": checkpoint})}),
                      tmp_path / "eval", pool=fleet.pool)
    assert report["num_items"] == 2
