"""Chunked token logprobs: the same values and gradients as one projection, without [tokens × vocab] logits."""
import json
import subprocess
import sys

import torch

from toolmaster.learner.losses import token_logprobs

_PEAK = r'''
import json, resource, sys, torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from toolmaster.learner.losses import token_logprobs
vocab, chunk = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
model = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048))
ids = torch.randint(0, vocab, (4, 1024))
token_logprobs(model, ids[:, :8], chunk).sum().backward()  # warm-up: allocator and autograd set up
model.zero_grad(set_to_none=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
token_logprobs(model, ids, chunk).sum().backward()
print(json.dumps({"growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
'''


def _tiny(vocab: int = 500):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256))


def test_chunked_logprobs_and_gradients_equal_unchunked():
    model = _tiny()
    ids = torch.randint(0, 500, (3, 50))
    out = {}
    for chunk in (0, 16, 1000):
        model.zero_grad()
        logp = token_logprobs(model, ids, chunk)
        (logp * torch.linspace(-1, 1, logp.numel()).view_as(logp)).sum().backward()
        out[chunk] = (logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    reference = out[0]
    for chunk in (16, 1000):
        assert (out[chunk][0] - reference[0]).abs().max() < 1e-6
        # gradients sum over positions in another order: equal to float rounding (relative 1e-6)
        assert all(torch.allclose(out[chunk][1][n], g, rtol=1e-6, atol=1e-6 * g.abs().max().item())
                   for n, g in reference[1].items())
    # the padding projections ZeRO-3 needs add exactly nothing
    padded = token_logprobs(model, ids, 16, min_chunks=20)
    assert torch.equal(padded.detach(), out[16][0])


def test_peak_memory_of_a_step_does_not_grow_with_the_vocabulary():
    """4 × 1024 tokens: at a 32 k vocabulary one fp32 projection alone is 4092 × 32000 × 4 B = 524 MB."""
    def growth(vocab: int, chunk: int) -> float:
        out = subprocess.run([sys.executable, "-c", _PEAK, str(vocab), str(chunk)], capture_output=True, text=True,
                             timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                  # every large block mmapped and returned when freed: the peak RSS is the
                                  # peak of live memory, not of heap fragmentation
                                  "MALLOC_MMAP_THRESHOLD_": "65536"})
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])["growth_mb"]

    logits_mb = 4092 * 32000 * 4 / 2**20
    small, large = growth(1000, 256), growth(32000, 256)
    unchunked = growth(32000, 0)
    assert unchunked > logits_mb  # the measurement sees a full projection when there is one
    # chunked: what the vocabulary adds is one chunk's logits, log-softmax and gradient (256 × 32000 × 4 B × 3
    # = 94 MB; measured 112 − 17 MB), not the projection over every token (measured unchunked: 1.5 GB)
    assert large - small < 0.25 * logits_mb, (small, large, unchunked)
