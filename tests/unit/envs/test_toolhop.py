from tests.conftest import TOOLHOP
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.envs.toolhop import official_correct
from toolmaster.models.tiny import TINY_SETTINGS as TINY


def _env():
    return make_env(build_config(TINY, ["env.name=toolhop", f"env.toolhop.data={TOOLHOP}"]).env)


def test_all_items_load_with_their_tools():
    tasks = _env().tasks("test")
    assert len(tasks) == 100
    assert sum(len(t.tools) for t in tasks) == 450
    assert all(t.tools and all(tool.executor.source for tool in t.tools) for t in tasks)


def test_official_rule():
    assert official_correct("15", "The answer is 15.", None)
    assert official_correct("1,500.0", "", None) is False  # commas are removed from the message, not the gold
    assert official_correct("1500.0", "it is 1,500 in total", None)
    assert official_correct("Russell", "<answer>russell</answer>", None)
    assert official_correct("86", "no idea", '{"result": 86}')
    assert not official_correct("86", "no idea", None)
    assert not official_correct("", "anything", None)


def test_tool_functions_load_and_run_in_sandbox(sandbox, capsys):
    """How many of the 450 tool functions load and run when called with their required arguments."""
    from toolmaster.tools.base import ToolRunner

    runner = ToolRunner(sandbox)
    sample = {"string": "test", "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}
    ran = loaded = 0
    for task in _env().tasks("test"):
        for tool in task.tools:
            params = tool.schema["parameters"]
            args = {}
            for name in params.get("required", []):
                spec = params["properties"].get(name, {})
                kind = spec.get("type")
                kind = kind[0] if isinstance(kind, list) else kind
                args[name] = spec["enum"][0] if "enum" in spec else sample.get(kind, "test")
            result = runner.run(tool, args)
            loaded += "defines no function" not in result.content and "SyntaxError" not in result.content
            ran += not result.content.startswith("error:")
    with capsys.disabled():
        print(f"\nToolHop tools: {loaded}/450 load in the sandbox, {ran}/450 run without raising on sample arguments")
    assert loaded >= 440 and ran >= 300


def test_training_rewards_the_exact_answer_while_the_lenient_rule_is_reported():
    """Listing candidates passes the official substring rule; the training reward wants the answer itself."""
    from toolmaster.agent.episode import Episode
    from toolmaster.envs.base import Task
    from toolmaster.envs.toolhop import ToolHop
    from toolmaster.rewards import score_episode

    env = ToolHop.__new__(ToolHop)
    task = Task(id="t", question="q", tools=(), reference="1912.0")
    for answer, reported, rewarded in [("1912", True, True), ("1912.", True, True), ("  1,912 ", True, True),
                                       ("1910, 1911 or 1912", True, False), ("1913", False, False)]:
        ep = Episode("e", "t", [{"role": "assistant", "content": f"<answer>{answer}</answer>"}], [], answer=answer)
        ep.grade = env.grade(task, ep)
        ep.reward_grade = env.reward_grade(task, ep)
        assert (ep.grade == 1.0, ep.reward_grade == 1.0) == (reported, rewarded), answer
        assert score_episode(ep, {"correctness": 1.0})["correctness"] == float(rewarded)
