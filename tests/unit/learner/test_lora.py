"""LoRA on the learner: the merged state dict is the model the adapters define."""
import torch
from transformers import AutoModelForCausalLM

from toolmaster.learner.actor import merged_lora_state, with_lora


def test_merged_state_reproduces_the_adapted_model(tiny_model_dir):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = with_lora(base, {"rank": 4, "alpha": 8.0, "dropout": 0.0,
                             "target_modules": ["q_proj", "v_proj", "down_proj"]})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    for n, p in model.named_parameters():
        if "lora_B" in n:  # peft starts B at zero (ΔW = 0); make the adapters do something
            p.data.normal_(0, 0.05)
    ids = torch.randint(0, base.config.vocab_size, (2, 40))
    with torch.no_grad():
        adapted = model(ids).logits
        with model.disable_adapter():
            plain = model(ids).logits
    assert (adapted - plain).abs().max() > 1e-3

    state = merged_lora_state(model)
    fresh = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert set(state) == set(fresh.state_dict())  # plain HF names, no lora_/base_layer keys
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert (fresh(ids).logits - adapted).abs().max() < 1e-4
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    assert torch.equal(state["model.layers.0.self_attn.k_proj.weight"],
                       original["model.layers.0.self_attn.k_proj.weight"])
    assert not torch.equal(state["model.layers.0.self_attn.q_proj.weight"],
                           original["model.layers.0.self_attn.q_proj.weight"])
