from toolmaster.agent.loop import NOTE_ACK, run_episodes
from toolmaster.envs import make_env
from toolmaster.tools.base import ToolRunner


class Scripted:
    def __init__(self, turns):
        self.turns = turns

    def generate(self, requests):
        return [self.turns[sum(m["role"] == "assistant" for m in r.messages)] for r in requests]


def test_malformed_output_becomes_observations_and_episode_continues(cfg, sandbox):
    env = make_env(cfg.env)
    task = env.tasks("train", 1)[0]
    turns = ["garbage", '<tool_call>{"name": broken</tool_call>', "<experience>nothing yet</experience>",
             f"<answer>{task.reference}</answer>"]
    ep = run_episodes(Scripted(turns), [task], env, ToolRunner(sandbox), max_turns=9,
                      reward_weights=cfg.rewards)[0]
    tool_msgs = [m["content"] for m in ep.messages if m["role"] == "tool"]
    assert tool_msgs[0].startswith("error: no tool call") and tool_msgs[1].startswith("error: tool call is not valid JSON")
    assert tool_msgs[2] == NOTE_ACK
    assert ep.correct and ep.finish_reason == "answer" and ep.stats["parse_errors"] == 2
    assert ep.rewards["correctness"] == 1.0 and ep.rewards["format"] == -0.5  # 2 of 4 turns malformed


def test_turn_limit_and_context_limit(cfg, sandbox):
    env = make_env(cfg.env)
    tasks = env.tasks("train", 2)

    class Stops:
        def generate(self, requests):
            return [None if r.task is tasks[1] else "thinking" for r in requests]

    a, b = run_episodes(Stops(), tasks, env, ToolRunner(sandbox), max_turns=3)
    assert a.finish_reason == "max_turns" and a.stats["turns"] == 3 and not a.correct
    assert b.finish_reason == "context_limit"
