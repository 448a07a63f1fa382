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
    assert (tool_msgs[0].startswith("error: no tool call")
            and tool_msgs[1].startswith("error: tool call is not valid JSON"))
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


def test_garbage_sandbox_replies_and_raising_runners_end_only_their_episode(cfg, sandbox):
    """A tool that writes garbage into its reply pipe is an error observation and the episode goes on; a
    runner or grader that raises ends that episode alone, as a failed one naming the stage."""
    import dataclasses
    import json

    from toolmaster.tools.base import PythonExecutor, Tool

    env = make_env(cfg.env)
    tasks = env.tasks("train", 3)
    tool = tasks[0].tools[0]
    name = tool.executor.function
    garbage = tool.executor.source + (f"\n_real = {name}\n\ndef {name}(**kw):\n    import os\n"
                                      "    os.write(3, b'garbage{')\n    return _real(**kw)\n")
    tasks[0] = dataclasses.replace(tasks[0],
                                   tools=(Tool(tool.schema, PythonExecutor(garbage, name)), *tasks[0].tools[1:]))

    def call(t):  # every required argument present, so the call reaches the sandbox
        args = {p: "x" for p in t.schema["parameters"].get("required", [])}
        return f'<tool_call>{json.dumps({"name": t.name, "arguments": args})}</tool_call>'

    class Runner(ToolRunner):
        async def arun(self, tool, arguments):
            if tool.name == tasks[1].tools[0].name:
                raise ConnectionError("tool server went away")
            return await super().arun(tool, arguments)

    class Env(type(env)):
        def grade(self, task, episode):
            if task is tasks[2]:
                raise RuntimeError("judge timed out")
            return super().grade(task, episode)

    class CallsFirstTool:
        def generate(self, requests):
            return [call(r.task.tools[0]) if len(r.messages) < 4 else f"<answer>{r.task.reference}</answer>"
                    for r in requests]

    a, b, c = run_episodes(CallsFirstTool(), tasks, Env(env.cfg), Runner(sandbox), max_turns=4,
                           reward_weights=cfg.rewards)
    assert call(tasks[0].tools[0]) in [m["content"] for m in a.messages]
    assert "error: tool process returned a malformed reply" in [m["content"] for m in a.messages]
    assert a.error is None and a.correct and a.finish_reason == "answer"
    assert b.error == {"kind": "tool_error", "message": "ConnectionError: tool server went away"}
    assert b.finish_reason == "error" and not b.correct and b.rewards == {"total": 0.0}
    assert c.error == {"kind": "grader_error", "message": "RuntimeError: judge timed out"} and not c.correct


def test_the_system_prompt_is_configurable(cfg, sandbox):
    from toolmaster.protocol import system_prompt

    env = make_env(cfg.env)
    task = env.tasks("train", 1)[0]
    default, = run_episodes(Scripted(["<answer>x</answer>"]), [task], env, ToolRunner(sandbox), max_turns=1)
    own, = run_episodes(Scripted(["<answer>x</answer>"]), [task], env, ToolRunner(sandbox), max_turns=1,
                        system_prompt="You are a careful tool user. Answer inside <answer></answer>.")
    assert default.messages[0] == {"role": "system", "content": system_prompt(True)}
    assert own.messages[0]["content"].startswith("You are a careful tool user.")
    assert own.messages[1:] == default.messages[1:]
