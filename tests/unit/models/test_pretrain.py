"""Copy pre-training: the tiny model learns to repeat a token span it has just read."""
import os
import random

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from toolmaster.models.pretrain import all_cores, copy_batch, pretrain_copy


def test_copy_batch_layout():
    ids, mask = copy_batch(random.Random(0), list(range(10, 50)), sep=1, batch=3, min_len=5, max_len=5)
    assert ids.shape == (3, 11) and mask.shape == (3, 11)
    assert torch.equal(ids[:, :5], ids[:, 6:]) and (ids[:, 5] == 1).all()
    assert mask[:, :6].sum() == 0 and mask[:, 6:].all()  # the loss is on the copy only


def test_copy_loss_falls_well_below_chance():
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True))
    facts = pretrain_copy(model, list(range(4, 64)), sep=1, steps=400, lr=3e-3, batch=32, min_len=4, max_len=10)
    chance = torch.log(torch.tensor(60.0)).item()  # uniform over the 60 tokens the copies use
    assert facts["copy_loss_first"] > 0.8 * chance
    assert facts["copy_loss_last"] < 0.5 * chance


def test_copy_pretraining_uses_every_core_and_gives_them_back():
    torch.set_num_threads(1)
    with all_cores():
        inside = torch.get_num_threads()
    assert torch.get_num_threads() == 1  # the actors started after the build keep their one thread each
    assert inside == (os.cpu_count() or 1)


def test_copy_batch_with_a_gap_keeps_the_copy_far_and_the_tokens_per_batch():
    texts = [list(range(100, 400))]
    ids, mask = copy_batch(random.Random(3), list(range(10, 50)), sep=1, batch=32, min_len=6, max_len=6,
                           texts=texts, max_gap=200)
    gap = ids.shape[1] - 13
    assert 0 < gap <= 200
    assert torch.equal(ids[:, :6], ids[:, -6:]) and (ids[:, 6 + gap] == 1).all()
    assert mask[:, : 7 + gap].sum() == 0 and mask[:, 7 + gap:].all()
    assert ids.shape[0] == max(4, 32 * 13 // (13 + gap))  # fewer rows when rows are longer
