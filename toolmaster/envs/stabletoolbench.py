"""StableToolBench: ToolBench queries, their RapidAPI tools served by the virtual tool server.

Each query's ``api_list`` becomes OpenAI functions (``<api>_for_<tool>``) plus ``Finish``; calls go over
HTTP to a StableToolBench-compatible server (``toolmaster serve-tools``) with the names StableToolBench's agent
sends, and observations are cut as its inference cuts them. The metric is the Solvable Pass Rate from an LLM
judge (Solved 1 / Unsure 0.5 / Unsolved 0, no Finish → Unsolved); without a judge it cannot be computed and the
report gives the finish rate instead.

Splits: ``test`` is the benchmark's queries (``data``, the 765 solvable ones) unless your own queries give one;
``train`` exists only with your own queries (``queries``, split by ``test_fraction``/``seed``, or
``train_queries``/``test_queries``). A training query whose id is in the test split or in ``data`` is refused
(a ConfigError with the count) when the environment is built, before any actor starts.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from toolmaster.config_base import ConfigError
from toolmaster.envs.base import Environment, Task
from toolmaster.tools.spec import FinishExecutor, Tool, VirtualApiExecutor
from toolmaster.toolserver.names import api_key, function_name, standardize

FINISH_SCHEMA = {
    "name": "Finish",
    "description": "Call this at the end of every attempt. With return_type give_answer, final_answer is all the "
                   "user sees, so it must hold the complete answer; with give_up_and_restart you give up.",
    "parameters": {
        "type": "object",
        "properties": {
            "return_type": {"type": "string", "enum": ["give_answer", "give_up_and_restart"]},
            "final_answer": {"type": "string", "description": "the answer for the user (with give_answer)"},
        },
        "required": ["return_type"],
    },
}
FINISH = Tool(FINISH_SCHEMA, FinishExecutor())

# RapidAPI parameter types → JSON Schema types (anything else, e.g. DATE or TIME, is passed as a string).
_TYPES = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean", "array": "array",
          "object": "object", "enum": "string", "float": "number", "int": "integer", "bool": "boolean"}


def query_files(data: str, groups: list[str] | None = None) -> list[Path]:
    path = Path(data)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"StableToolBench data {data!r} is neither a query file nor a folder of them")
    files = sorted(path.glob("*.json"))
    if groups:
        unknown = set(groups) - {f.stem for f in files}
        if unknown:
            raise ValueError(f"no StableToolBench group(s) {sorted(unknown)} in {data!r}; "
                             f"found {[f.stem for f in files]}")
        files = [f for f in files if f.stem in groups]
    if not files:
        raise FileNotFoundError(f"no query files (*.json) in StableToolBench folder {data!r}")
    return files


def api_schema(api: dict) -> dict:
    """An api_list entry as an OpenAI function schema."""
    props, required = {}, []
    for param, is_required in [(p, True) for p in api.get("required_parameters") or []] + \
                              [(p, False) for p in api.get("optional_parameters") or []]:
        spec = {"type": _TYPES.get(str(param.get("type", "string")).lower(), "string"),
                "description": str(param.get("description") or "")}
        if param.get("default") not in (None, ""):
            spec["example_value"] = param["default"]
        props[param["name"]] = spec
        if is_required:
            required.append(param["name"])
    description = (f"Subfunction of the tool \"{api['tool_name']}\": {api.get('api_description') or api['api_name']}")
    return {"name": function_name(api["tool_name"], api["api_name"]), "description": description[:1024],
            "parameters": {"type": "object", "properties": props, "required": required}}


def query_to_task(query: dict, group: str, server_cfg, max_observation_length: int | None = None) -> Task:
    url = server_cfg.url or f"http://{server_cfg.host}:{server_cfg.port}"
    tools, names = [], set()
    for api in query["api_list"]:
        schema = api_schema(api)
        if schema["name"] in names:  # two apis standardizing to one name: keep the first, as ToolBench does
            continue
        names.add(schema["name"])
        # the names StableToolBench's agent sends (rapidapi.py: the standardized tool name, change_name(
        # standardize(api_name))); the category as written
        executor = VirtualApiExecutor(url, api["category_name"], standardize(api["tool_name"]),
                                      api_key(api["api_name"]), key=server_cfg.key, timeout_s=server_cfg.timeout_s,
                                      max_observation_chars=max_observation_length,
                                      max_connections=server_cfg.client_max_connections)
        tools.append(Tool(schema, executor))
    tools.append(FINISH)
    return Task(id=f"{group}:{query['query_id']}", question=query["query"], tools=tuple(tools), reference="",
                metadata={"group": group, "query_id": query["query_id"],
                          "relevant_apis": query.get("relevant APIs", [])})


def read_queries(path: str, groups: list[str] | None = None) -> list[tuple[str, dict]]:
    """(group, query) of every query in a ToolBench query file or folder of them; the group is the file's name."""
    out = []
    for file in query_files(path, groups):
        data = json.loads(file.read_text())
        if not isinstance(data, list) or not all(isinstance(q, dict) and "query" in q and "query_id" in q
                                                 and "api_list" in q for q in data):
            raise ValueError(f"{str(file)!r} is not a ToolBench query file (a JSON list of objects with query, "
                             "query_id and api_list)")
        out += [(file.stem, q) for q in data]
    return out


def split_queries(cfg) -> dict[str, list[tuple[str, dict]]]:
    """The splits ``cfg`` (an env.stabletoolbench section) gives, each a list of (group, query)."""
    if cfg.queries:
        pool = read_queries(cfg.queries)
        order = list(range(len(pool)))
        random.Random(cfg.seed).shuffle(order)
        held = set(order[:round(len(pool) * cfg.test_fraction)])
        return {"train": [q for i, q in enumerate(pool) if i not in held],
                "test": [q for i, q in enumerate(pool) if i in held]}
    if cfg.train_queries:
        test = read_queries(cfg.test_queries) if cfg.test_queries else read_queries(cfg.data, cfg.groups)
        return {"train": read_queries(cfg.train_queries), "test": test}
    return {"test": read_queries(cfg.data, cfg.groups)}


def _ids(queries) -> set[str]:
    return {str(q["query_id"]) for _, q in queries}


def check_disjoint(cfg, splits: dict[str, list[tuple[str, dict]]]) -> None:
    """Refuse training on evaluation queries: a train query id in the test split, or in the benchmark's test
    queries (``data``, when that path exists), is a ConfigError with the count."""
    train = _ids(splits.get("train", []))
    if not train:
        return
    both = train & _ids(splits["test"])
    if both:
        raise ConfigError(f"env.stabletoolbench: {len(both)} of the {len(train)} training query ids are also in the "
                          f"test split (e.g. {sorted(both)[:3]}): the splits must be disjoint")
    if Path(cfg.data).exists():
        bench = train & _ids(read_queries(cfg.data))
        if bench:
            raise ConfigError(f"env.stabletoolbench: {len(bench)} of the {len(train)} training query ids are "
                              f"StableToolBench test queries (env.stabletoolbench.data = {cfg.data!r}; e.g. "
                              f"{sorted(bench)[:3]}): they stay test-only")


class StableToolBench(Environment):
    name = "stabletoolbench"
    metric = "sopr"
    metric_scale = 100.0

    def __init__(self, cfg, server_cfg, judge_cfg):
        splits = split_queries(cfg)
        check_disjoint(cfg, splits)
        self.splits = tuple(sorted(splits, key=["train", "test"].index))
        self._tasks = {split: [query_to_task(q, group, server_cfg, cfg.max_observation_length) for group, q in qs]
                       for split, qs in splits.items()}
        self.judge_cfg = judge_cfg
        self._judge = None
        self._rounds: dict[str, dict] = {}  # episode id → its SoPR round scores, from grade() to judgments()

    @property
    def gradable(self) -> bool:
        return bool(self.judge_cfg.base_url)

    def require_split(self, split: str, setting: str = "split") -> None:
        if split == "train" and split not in self.splits:
            raise ConfigError(f"{setting} = 'train': stabletoolbench has no train split without your own queries "
                              "(its test queries stay test-only): set env.stabletoolbench.queries (split by "
                              "test_fraction) or train_queries")
        super().require_split(split, setting)

    def tasks(self, split: str = "test", num: int | None = None, start: int = 0) -> list[Task]:
        self.require_split(split)
        return self._slice(self._tasks[split], num, start)

    def grade(self, task, episode) -> float | None:
        if not self.gradable:
            return None
        if self.judge_cfg.stabletoolbench_dir:  # StableToolBench's own evaluator (toolmaster.evaluation.tooleval)
            from toolmaster.evaluation import tooleval

            if self._judge is None:
                self._judge = tooleval.make_judge(self.judge_cfg)
            grade, self._rounds[episode.episode_id] = tooleval.sopr_judgments(
                self._judge, task, episode, tooleval.samples(self.judge_cfg))
            return grade
        from toolmaster.llm.judge import PassJudge, tool_trace

        if self._judge is None:
            self._judge = PassJudge(self.judge_cfg)
        answer = episode.answer if episode.finish_reason == "answer" else None
        return self._judge.score(task.question, answer, tool_trace(episode))

    def judgments(self, task, episode) -> dict[str, float]:
        """With StableToolBench's evaluator: the episode's score in each evaluation round (sopr_round_<i>)."""
        return self._rounds.pop(episode.episode_id, {})

    def report_figures(self, tasks, records) -> dict:
        """The judge (model, samples, procedure), SoPR's std over rounds and SoWR with reference answers."""
        if not self.gradable:
            return {}
        from toolmaster.evaluation.tooleval import ToolEvalJudge, report_figures

        return report_figures(self.judge_cfg, tasks, records,
                              judge=self._judge if isinstance(self._judge, ToolEvalJudge) else None)
