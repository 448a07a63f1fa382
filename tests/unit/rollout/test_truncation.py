"""Truncation on a fake engine (the VLLMEngine's bookkeeping over a scripted sampler): a turn that no longer
fits ends the episode as context_limit, no record exceeds max_model_len, and a record ends at its last sampled
turn, never on an observation the policy did not answer."""
import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

from toolmaster.agent.loop import TurnRequest
from toolmaster.config import GenerationConfig
from toolmaster.protocol import build_messages
from toolmaster.protocol.template import chat_format
from toolmaster.rollout.vllm_engine import VLLMEngine


@dataclass
class _Params:
    max_tokens: int
    seed: int | None = None

    def clone(self):
        return _Params(self.max_tokens, self.seed)


@dataclass
class _ScriptedSampler:
    """Each turn samples ``turn_tokens`` of a fixed text, then the end-of-turn token."""
    tokenizer: object
    end_of_turn: int
    turn_tokens: int
    prompts: list = field(default_factory=list)

    async def __call__(self, prompt_ids, params):
        self.prompts.append(len(prompt_ids))
        text = self.tokenizer("call the tool again " * 50, add_special_tokens=False)["input_ids"]
        cut = self.turn_tokens >= params.max_tokens  # vLLM stops at max_tokens without the end-of-turn token
        ids = text[:params.max_tokens] if cut else text[:self.turn_tokens] + [self.end_of_turn]
        sample = SimpleNamespace(token_ids=ids, logprobs=[{t: SimpleNamespace(logprob=-0.5)} for t in ids],
                                 finish_reason="length" if cut else "stop")
        return SimpleNamespace(outputs=[sample])


def _engine(tokenizer, max_len: int, max_tokens: int, turn_tokens: int) -> VLLMEngine:
    engine = VLLMEngine.__new__(VLLMEngine)  # everything but the vLLM engine itself
    engine.tokenizer, engine.chat = tokenizer, chat_format(tokenizer)
    engine.end_of_turn = tokenizer.convert_tokens_to_ids(engine.chat.end_of_turn)
    engine.max_len, engine.version, engine.seed = max_len, 0, 0
    engine.trajectories, engine.episode_params, engine.episode_seeds, engine.episode_constrain = {}, {}, {}, {}
    engine.default_generation = GenerationConfig()
    engine.params = _Params(max_tokens)
    engine._final = _ScriptedSampler(tokenizer, engine.end_of_turn, turn_tokens)
    return engine


def _episode(engine, observation: str, turns: int = 20):
    messages = build_messages("What is the velo of kozabi?")
    task = SimpleNamespace(schemas=[{"name": "get_velo", "description": "d", "parameters": {}}])
    for _ in range(turns):
        text = asyncio.run(engine.respond(TurnRequest("e", messages, task)))
        if text is None:
            return "context_limit", engine.pop_trajectory("e")
        messages = messages + [{"role": "assistant", "content": text}, {"role": "tool", "content": observation}]
    return "max_turns", engine.pop_trajectory("e")


def test_a_turn_that_does_not_fit_ends_the_episode_at_its_last_sampled_turn(qwen_tokenizer):
    engine = _engine(qwen_tokenizer, max_len=400, max_tokens=64, turn_tokens=30)
    finish, traj = _episode(engine, "error: " + "a long observation " * 20)
    assert finish == "context_limit" and traj.turns >= 2
    assert len(traj.token_ids) <= 400  # the 621-token record of max_len 400 cannot happen again
    assert traj.loss_mask[-1] == 1 and traj.token_ids[-1] == engine.end_of_turn  # its last sampled token
    assert all(n + 64 <= 400 for n in engine._final.prompts)  # every sampled turn had its whole budget


def test_a_turn_cut_by_max_tokens_is_closed_and_the_record_still_fits(qwen_tokenizer):
    engine = _engine(qwen_tokenizer, max_len=300, max_tokens=16, turn_tokens=40)  # every turn is cut
    finish, traj = _episode(engine, "ok")
    assert finish == "context_limit" and len(traj.token_ids) <= 300 and traj.last_finish == "length"
    # a cut turn is closed with an unsampled end-of-turn token, as the template closes a turn
    assert traj.token_ids[-1] == engine.end_of_turn and traj.loss_mask[-2:] == [1, 0]
