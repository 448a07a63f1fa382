import json

from toolmaster.protocol import render_text
from toolmaster.trainer.sft import sft_example


def test_sft_mask_covers_exactly_assistant_content(tiny_model_dir, tmp_path, cfg):
    import datasets
    from transformers import AutoTokenizer

    from toolmaster.teacher.synth import synthesize

    synthesize(cfg.model_copy(update={"synth": cfg.synth.model_copy(update={"num_tasks": 5})}), tmp_path)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for row in datasets.load_from_disk(str(tmp_path)):
        tools = json.loads(row["tools"])
        ids, mask = sft_example(tok, row["messages"], tools)
        assert tok.decode(ids) + "\n" == render_text(row["messages"], tools)
        on = tok.decode([t for t, m in zip(ids, mask) if m])
        expected = "".join(m["content"] + "<|im_end|>" for m in row["messages"] if m["role"] == "assistant")
        assert on == expected
