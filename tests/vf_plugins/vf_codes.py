"""A small offline verifiers (v1) taskset for the tests: each task names a word; the answer is its code,
printed in the prompt's table and also served by a tool (a vf.Toolset, verifiers' MCP tool server). One
reward (the exact code in the last reply), one metric.

Imported by verifiers as the top-level module ``vf_codes`` (tests/vf_plugins on PYTHONPATH); the tool
server runs it as ``python -m vf_codes``."""
import verifiers.v1 as vf

CODES = {"apple": "A7", "river": "R2", "stone": "S9", "cloud": "C4", "flame": "F1", "grass": "G6",
         "ocean": "O3", "tiger": "T8"}


class CodesToolset(vf.Toolset[vf.ToolsetConfig]):
    TOOL_PREFIX = "codes"

    @vf.tool
    def lookup(self, word: str) -> str:
        """The code of a word."""
        return CODES.get(word.strip().lower(), "unknown word")


class CodesData(vf.TaskData):
    word: str = ""
    answer: str = ""


class CodesTaskConfig(vf.TaskConfig):
    tools: vf.ToolsetConfig = vf.ToolsetConfig()


class CodesTask(vf.Task[CodesData, vf.State, CodesTaskConfig]):
    @classmethod
    def toolsets(cls, config: CodesTaskConfig) -> list[vf.Toolset]:
        return [CodesToolset(config.tools)]

    @vf.reward(weight=1.0)
    async def exact(self, trace: vf.Trace) -> float:
        return 1.0 if self.data.answer in (trace.last_reply or "") else 0.0

    @vf.metric
    async def reply_chars(self, trace: vf.Trace) -> float:
        return float(len(trace.last_reply or ""))


class CodesConfig(vf.TasksetConfig):
    num_tasks: int = 8
    task: CodesTaskConfig = CodesTaskConfig()


class CodesTaskset(vf.Taskset[CodesTask, CodesConfig]):
    def load(self) -> list[CodesTask]:
        table = ", ".join(f"{w}={c}" for w, c in CODES.items())
        words = list(CODES)
        return [CodesTask(CodesData(prompt=f"Codes: {table}. What is the code of {w}? Use the lookup tool or the "
                                           "table, then reply with the code only.", word=w, answer=CODES[w]),
                          self.config.task)
                for w in (words[i % len(words)] for i in range(self.config.num_tasks))]


__all__ = ["CodesTaskset"]

if __name__ == "__main__":
    CodesToolset.run()
