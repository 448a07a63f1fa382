"""`toolmaster serve-model`: vLLM's OpenAI server renders a chat with tools through the model's own chat
template, token for token as transformers renders it, and answers greedily."""
import json
import urllib.request

from tests.unit.models.test_tiny import TOOLS
from toolmaster.protocol import build_messages


def test_the_server_renders_tools_through_the_models_chat_template(model_server, tiny_model_dir):
    from transformers import AutoTokenizer

    messages = build_messages("What is the velo of kozabi?")
    body = {"model": "tiny", "messages": messages, "max_tokens": 8, "temperature": 0,
            "tools": [{"type": "function", "function": tool} for tool in TOOLS]}
    request = urllib.request.Request(model_server.base_url + "/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        reply = json.loads(response.read())
    expected = AutoTokenizer.from_pretrained(tiny_model_dir).apply_chat_template(
        messages, tools=body["tools"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert reply["usage"]["prompt_tokens"] == len(expected) > 50
    assert reply["usage"]["completion_tokens"] > 0
