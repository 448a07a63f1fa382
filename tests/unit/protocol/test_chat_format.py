from toolmaster.protocol import build_messages, render_text

TOOLS = [{"name": "ping", "description": "d", "parameters": {"type": "object", "properties": {}}}]


def conversation():
    return build_messages("What is x?") + [
        {"role": "assistant", "content": '<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>'},
        {"role": "tool", "content": "pong"}, {"role": "tool", "content": "error: again"},
        {"role": "assistant", "content": "<answer>x</answer>"},
    ]


def test_tool_messages_grouped_in_one_user_turn():
    text = render_text(conversation(), TOOLS)
    assert "<|im_start|>user\n<tool_response>\npong\n</tool_response>\n<tool_response>\nerror: again\n" \
           "</tool_response><|im_end|>\n" in text
    assert text.count("<|im_start|>system") == 1 and '"name": "ping"' in text


def test_template_and_python_renderer_agree(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    msgs = conversation()
    for gen, upto in [(False, len(msgs)), (True, 2), (True, 4)]:
        ours = render_text(msgs[:upto], TOOLS, add_generation_prompt=gen)
        theirs = tok.apply_chat_template(msgs[:upto], tools=TOOLS, tokenize=False, add_generation_prompt=gen)
        assert ours == theirs
    no_tools = render_text(msgs[:2])
    assert no_tools == tok.apply_chat_template(msgs[:2], tokenize=False)
