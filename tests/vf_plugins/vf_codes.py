"""A small offline verifiers (v1) taskset for the tests: each task names a word, the answer is that word's
code from a fixed table printed in the prompt. One reward (exact code in the last reply), one metric.

Imported by verifiers as the top-level module ``vf_codes`` (tests/vf_plugins on PYTHONPATH)."""
import verifiers.v1 as vf

CODES = {"apple": "A7", "river": "R2", "stone": "S9", "cloud": "C4", "flame": "F1", "grass": "G6",
         "ocean": "O3", "tiger": "T8"}


class CodesData(vf.TaskData):
    word: str = ""
    answer: str = ""


class CodesTask(vf.Task[CodesData]):
    @vf.reward(weight=1.0)
    async def exact(self, trace: vf.Trace) -> float:
        return 1.0 if self.data.answer in (trace.last_reply or "") else 0.0

    @vf.metric
    async def reply_chars(self, trace: vf.Trace) -> float:
        return float(len(trace.last_reply or ""))


class CodesConfig(vf.TasksetConfig):
    num_tasks: int = 8


class CodesTaskset(vf.Taskset[CodesTask, CodesConfig]):
    def load(self) -> list[CodesTask]:
        table = ", ".join(f"{w}={c}" for w, c in CODES.items())
        words = list(CODES)
        return [CodesTask(CodesData(prompt=f"Codes: {table}. What is the code of {w}? Reply with the code only.",
                                    word=w, answer=CODES[w]), self.config.task)
                for w in (words[i % len(words)] for i in range(self.config.num_tasks))]


__all__ = ["CodesTaskset"]
