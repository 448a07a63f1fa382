"""Token trajectories from a real rollout worker (Ray actor, vLLM async engine): exact ids, mask on
sampled tokens only, many episodes in flight at once."""
import ray

from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.protocol import render_text


def _runs(mask):
    runs, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _hf_logprobs(model_dir, ids):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
    return [0.0] + [logp[i - 1, t].item() for i, t in enumerate(ids) if i]


def _perturbed_tied_copy(model_dir, out):
    """The same architecture with other weights, saved tied (no lm_head tensor in the checkpoint)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(out)
    return out


def test_multi_turn_mask_and_retokenization(fleets, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    cfg = build_config(TINY, ["rollout.generation.max_new_tokens=24", "env.max_turns=3", "rollout.num_workers=1"])
    tasks = make_env(cfg.env).tasks("test", 4)
    pool = fleets.pool(cfg, tiny_model_dir)
    records = pool.run(tasks, group_size=2, step=0)
    worker = next(iter(pool.workers.values()))
    peak = ray.get(worker.stats.remote())["peak_episodes_in_flight"]
    # the running fleet switches to another checkpoint (a tied one) as a new version: engine = HF
    from toolmaster.weights.object_store import checkpoint_handle

    other = _perturbed_tied_copy(tiny_model_dir, str(tmp_path / "other"))
    seq = max((r.token_ids for r in records), key=len)
    pool.update_weights(checkpoint_handle(other, 1))
    engine_lp = pool.prompt_logprobs(seq)[0]
    assert max(abs(a - b) for a, b in zip(engine_lp[1:], _hf_logprobs(other, seq)[1:])) < 1e-4
    assert [r.episode_id for r in records] == [f"s0-t{i}-g{g}" for i in range(4) for g in range(2)]
    assert peak == 8  # all eight episodes shared the one engine at once
    assert not pool.assignment  # every assignment was released
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for rec in records:
        ids, mask, logprobs, messages = rec.token_ids, rec.loss_mask, rec.logprobs, rec.messages
        assert len(ids) == len(mask) == len(logprobs)
        assert rec.stats["turns"] >= 2  # untrained: no answer, so several turns with observations
        assert rec.policy_version == 0 and rec.timings["generate"] > 0
        # the trajectory ends with the policy's last turn (observations after it were never seen by it)
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        tools = next(t for t in tasks if t.id == rec.task_id).schemas
        assert tok.decode(ids) + "\n" == render_text(messages[: last + 1], tools)
        assistant = [m["content"] for m in messages if m["role"] == "assistant"]
        runs = _runs(mask)
        assert len(runs) == len(assistant)
        for (lo, hi), content in zip(runs, assistant):
            assert tok.decode(ids[lo:hi]) in (content, content + "<|im_end|>")
            assert all(lp <= 0.0 for lp in logprobs[lo:hi])
        masked_out = tok.decode([t for t, m in zip(ids, mask) if not m])
        for m in messages[:last]:  # the observations the policy saw
            if m["role"] == "tool":
                assert m["content"] in masked_out
        assert all(lp == 0.0 for lp, m in zip(logprobs, mask) if not m)


def test_a_turn_that_no_longer_fits_ends_the_episode_within_the_context(fleets, tiny_model_dir):
    """The real engine: the first turn may use all but a few tokens of the context, so the second cannot fit.
    The episode ends as context_limit; its record stays within max_model_len and ends at its sampled turn,
    without the observation the policy never answered (it once grew to 621 tokens of a 400-token context)."""
    from transformers import AutoConfig, AutoTokenizer

    from toolmaster.protocol import build_messages
    from toolmaster.protocol.template import chat_format

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    max_len = AutoConfig.from_pretrained(tiny_model_dir).max_position_embeddings
    cfg = build_config(TINY, ["env.max_turns=4", "rollout.num_workers=1"])
    task = make_env(cfg.env).tasks("test", 1)[0]
    prompt = tok(chat_format(tok).render(build_messages(task.question), task.schemas, True),
                 add_special_tokens=False)["input_ids"]
    room = max_len - len(prompt) - 8  # the first turn fits with 8 tokens to spare
    pool = fleets.pool(cfg, tiny_model_dir)
    record, = pool.run_specs([("ctx-0", task)], generation={"max_new_tokens": room, "temperature": 0.0})
    assert record.finish_reason == "context_limit" and record.turns == 1, record.finish_reason
    assert len(record.token_ids) <= max_len and record.token_ids[:len(prompt)] == prompt
    last_sampled = max(i for i, m in enumerate(record.loss_mask) if m)
    assert len(record.token_ids) - 1 - last_sampled <= 1  # at most the <|im_end|> that closes a cut turn
    assert record.messages[-1]["role"] == "tool"  # the observation the loop appended ...
    assert record.messages[-1]["content"] not in tok.decode(record.token_ids)  # ... is not in the record
