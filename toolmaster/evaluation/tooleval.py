"""StableToolBench's evaluator (``toolbench/tooleval``) run as its scripts run it: SoPR and SoWR.

None of the evaluator's text lives here. Its templates and function schemas are read at run time from the
user's StableToolBench checkout (``env.judge.stabletoolbench_dir``), from
``toolbench/tooleval/evaluators/<evaluator>/`` (config.yaml and the template it names), so the judge is
asked exactly what StableToolBench asks it. What follows the upstream code (THUNLP-MT/StableToolBench):

- **Converted answers** (``convert_to_answer_format.py``, ``utils.py``): an episode becomes
  ``{query, available_tools, answer: {method, total_steps, final_answer, answer_details}}``, the details a chain
  system → user → one ``tool`` node per call (``{name, arguments, response}``; Finish has an empty response) or
  an ``assistant`` node for a turn without calls.
- **SoPR** (``eval_pass_rate.py``, ``ReinforceToolLearningEvaluator.check_is_solved`` in ``rtl.py``): per query
  and per evaluation round, an answer whose last tool step is not ``Finish`` is Unsolved without asking; an
  empty final answer or one holding ``give_up_and_restart`` is Unsolved without asking; otherwise the judge
  gives ``check_answer_status`` from (query, final answer), and an Unsure one is asked again as
  ``parse_answer_status`` with the whole converted answer (JSON). A round's rate counts Solved 1, Unsure 0.5,
  Unsolved 0 over all queries; the pass rate is the mean over rounds and the std (population) is over rounds.
- **Judge calls** (``OpenAINormalizedEvaluator.function_call`` in ``tooleval.py``): one user message, the
  function's ``<description>`` from the template formatted with the arguments; the function forced with
  ``tool_choice``; with reasons asked for, a required string ``reason`` is added; the reply's tool-call arguments
  are parsed as JSON. Temperature and max_tokens come from the evaluator's config.yaml; the model is
  ``env.judge.model`` (upstream's ``EVAL_MODEL``). A reply that cannot be read (no tool call, not JSON, a
  missing field, a label outside the enum) is asked again, 3 attempts in all (upstream retries with tenacity and
  backoff, and its run stops when they fail); then :class:`JudgeReplyError` is raised.
- **SoWR** (``eval_preference.py``, ``BaseEvaluator.annotate_preference`` in ``base.py``,
  ``ReinforceToolLearningEvaluator.normalized_openai_completions`` in ``rtl.py``): per query and round the
  two answers (reference first) are cut (final answer to 1000 characters, ``method`` dropped), shuffled, each
  labeled by ``check_is_solved``; one Solved answer wins; two Solved → ``select_better_answer``; else one
  Unsure wins; else ``check_task_solvable`` then ``select_better_answer``; identical answers → a random pick.
  A query missing from the reference answers goes to the candidate, one missing from the candidate's to the
  reference. After the rounds a query is won when the candidate got more rounds than the reference, lost
  when fewer, tied when equal; win rate = won / queries (a tie counts 0 in it; the tie rate is reported
  beside it). ``--use_pass_rate true`` changes nothing upstream: the saved labels are read back from the CSV
  as the text of a dict, match no status and fall back to labeling from scratch, as here.
"""
from __future__ import annotations

import copy
import json
import logging
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EVALUATOR = "tooleval_gpt-3.5-turbo_default"  # eval_pass_rate.py's and eval_preference.py's --evaluator default
PASS_RATE_SAMPLES = 3  # run_pass_rate.sh (and the README's SoPR command): --evaluate_times 3
PREFERENCE_ROUNDS = 3  # run_preference.sh (and the README's SoWR command): --evaluate_times 3
ATTEMPTS = 3  # tenacity's stop_after_attempt(3) on function_call
LABELS = ("Solved", "Unsure", "Unsolved")  # AnswerStatus
TASK_STATUSES = ("Solvable", "Unsure", "Unsolvable")  # TaskStatus
SCORES = {"Solved": 1.0, "Unsure": 0.5, "Unsolved": 0.0}
ROUND = "sopr_round_"  # an episode's judgments: sopr_round_0, sopr_round_1, ... (each 1, 0.5 or 0)
FUNCTIONS = ("check_answer_status", "parse_answer_status", "check_task_solvable", "select_better_answer")


class JudgeReplyError(RuntimeError):
    """The judge's reply could not be read in every attempt."""


@dataclass
class Evaluator:
    """One StableToolBench evaluator as its checkout defines it."""
    name: str
    path: Path
    templates: dict  # function name → the template's <description>, formatted per call
    functions: dict  # function name → the OpenAI function schema from config.yaml
    temperature: float | None
    max_tokens: int | None


def load_evaluator(checkout: str | Path, name: str = EVALUATOR) -> Evaluator:
    """Read ``<checkout>/toolbench/tooleval/evaluators/<name>/`` as ``load_registered_automatic_evaluator`` does."""
    import yaml

    path = Path(checkout).expanduser() / "toolbench" / "tooleval" / "evaluators" / name
    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"no StableToolBench evaluator {name!r}: {config_file} is missing "
                                "(env.judge.stabletoolbench_dir must be a StableToolBench checkout)")
    config = yaml.safe_load(config_file.read_text())
    if config.get("registered_cls_name") != "ReinforceToolLearningEvaluator":
        raise ValueError(f"evaluator {name!r} uses {config.get('registered_cls_name')!r}; only the "
                         "ReinforceToolLearningEvaluator procedure (StableToolBench's default) is implemented")
    template = (path / config["prompt_template"]).read_text()
    templates = {}
    for function in re.findall(r"<function>(.*?)</function>", template, re.DOTALL):
        templates[re.findall(r"<name>(.*?)</name>", function, re.DOTALL)[0]] = \
            re.findall(r"<description>(.*?)</description>", function, re.DOTALL)[0]
    kwargs = config.get("completions_kwargs") or {}
    functions = {f["name"]: f for f in kwargs.get("functions") or []}
    missing = [f for f in FUNCTIONS if f not in templates or f not in functions]
    if missing:
        raise ValueError(f"evaluator {name!r} at {path} lacks function(s) {missing} in its template or config.yaml")
    return Evaluator(name, path, templates, functions, kwargs.get("temperature"), kwargs.get("max_tokens"))


# --- converted answers ----------------------------------------------------------------------------------------


def converted_answer(query: str, tools: list[dict], messages: list[dict], final_answer: str,
                     method: str = "toolmaster") -> dict:
    """An episode in StableToolBench's converted-answer format (one example of ``<model>/<group>.json``).

    ``messages`` is the episode's conversation in ToolMaster's protocol (assistant text with ``<tool_call>``
    blocks, one tool message per observation); ``final_answer`` is what Finish gave ('' when it gave up or never
    finished). An answer given as ``<answer>...</answer>`` is ToolMaster's other way to finish and is written as
    a Finish call with return_type give_answer.
    """
    from toolmaster.protocol.parser import ToolCall, parse_turn

    start = next((i + 1 for i, m in enumerate(messages) if m["role"] == "user"), 0)
    chain, i, finished = [], start, False
    while i < len(messages) and not finished:
        message = messages[i]
        i += 1
        if message["role"] != "assistant":
            continue
        observations = []
        while i < len(messages) and messages[i]["role"] == "tool":
            observations.append(messages[i]["content"])
            i += 1
        parsed = parse_turn(message["content"], tools)
        k = 0
        for item in parsed.items:
            if isinstance(item, ToolCall) and item.name == "Finish":
                chain.append(("tool", {"name": "Finish", "arguments": json.dumps(item.arguments), "response": ""}))
                finished = True
                break
            response = observations[k] if k < len(observations) else ""
            k += 1
            if isinstance(item, ToolCall):
                chain.append(("tool", {"name": item.name, "arguments": json.dumps(item.arguments),
                                       "response": response}))
            elif item.tool is not None:  # a call whose arguments could not be read: its error is the response
                chain.append(("tool", {"name": item.tool, "arguments": "", "response": response}))
        if finished:
            break
        if parsed.answer is not None:
            chain.append(("tool", {"name": "Finish", "response": "", "arguments": json.dumps(
                {"return_type": "give_answer", "final_answer": parsed.answer})}))
            finished = True
        elif not parsed.items:
            chain.append(("assistant", message["content"]))
    nodes = [("system", ""), ("user", "")] + chain
    details = None
    for role, content in reversed(nodes):
        details = {"role": role, "message": content, "next": [details] if details else []}
    return {"query": query, "available_tools": copy.deepcopy(tools),
            "answer": {"method": method, "total_steps": len(nodes), "final_answer": final_answer or "",
                       "answer_details": [details]}}


def steps(example: dict) -> tuple[str, str]:
    """``utils.get_steps``: the tool steps of an example as text, and its last one (``Final step: ...``)."""
    node = example["answer"]["answer_details"][0]
    out, count, final = [], 1, ""
    while "next" in node:
        if node["message"] and node["role"] == "tool":
            out.append(f"Step {count}: {node['message']}")
            final = f"Final step: {node['message']}"
            count += 1
        if not node["next"]:
            break
        node = node["next"][0]
    return "\n".join(out), final


# --- the judge ------------------------------------------------------------------------------------------------


class ToolEvalJudge:
    """StableToolBench's evaluator against one chat client (``call_function(messages, function, ...)``)."""

    def __init__(self, evaluator: Evaluator, client, *, rng: random.Random | None = None, attempts: int = ATTEMPTS):
        self.evaluator = evaluator
        self.client = client
        self.rng = rng or random.Random()
        self.attempts = attempts

    def function_call(self, name: str, args: dict, *, return_reason: bool = False, read=None):
        """Ask the judge for ``name`` and return ``read(reply)`` (the reply's arguments as a dict by default)."""
        function = copy.deepcopy(self.evaluator.functions[name])
        if return_reason:
            function["parameters"].setdefault("required", []).append("reason")
            function["parameters"].setdefault("properties", {})["reason"] = {
                "type": "string", "description": "explain your answer."}
        messages = [{"role": "user", "content": str(self.evaluator.templates[name]).format(**args)}]
        problem = None
        for attempt in range(self.attempts):
            arguments, _ = self.client.call_function(messages, function, max_tokens=self.evaluator.max_tokens,
                                                     temperature=self.evaluator.temperature)
            try:
                if arguments is None:
                    raise ValueError("the reply holds no tool call")
                reply = json.loads(arguments)
                if not isinstance(reply, dict):
                    raise ValueError("the tool call's arguments are not a JSON object")
                return read(reply) if read else reply
            except (ValueError, KeyError, TypeError) as err:
                problem = f"{type(err).__name__}: {err}; reply {arguments!r:.300}"
                log.warning("judge reply to %s unreadable (attempt %d of %d): %s", name, attempt + 1, self.attempts,
                            problem)
        raise JudgeReplyError(f"the judge's reply to {name} could not be read in {self.attempts} attempts: {problem}")

    def _status(self, name: str, args: dict, return_reason: bool) -> str:
        def read(reply):
            status = reply["answer_status"]
            if status not in LABELS:
                raise ValueError(f"answer_status {status!r} is none of {LABELS}")
            if return_reason and "reason" not in reply:  # upstream reads it, and fails without it
                raise KeyError("reason")
            return status
        return self.function_call(name, args, return_reason=return_reason, read=read)

    def check_is_solved(self, query: str, answer: dict, return_reason: bool = False) -> str:
        """``ReinforceToolLearningEvaluator.check_is_solved``: Solved, Unsure or Unsolved."""
        final = answer["final_answer"]
        if final == "" or "give_up_and_restart" in final:
            return "Unsolved"
        status = self._status("check_answer_status", {"query": query, "answer": final}, return_reason)
        if status == "Unsure":
            status = self._status("parse_answer_status", {"query": query, "answer": json.dumps(answer)},
                                  return_reason)
        return status

    def pass_label(self, example: dict) -> str:
        """One round of ``eval_pass_rate.compute_pass_rate`` for one converted answer."""
        _, final_step = steps(example)
        if "'name': 'Finish'" not in final_step:
            return "Unsolved"
        return self.check_is_solved(example["query"], example["answer"], return_reason=True)

    def check_task_solvable(self, task: dict) -> str:
        def read(reply):
            if reply["task_status"] not in TASK_STATUSES:
                raise ValueError(f"task_status {reply['task_status']!r} is none of {TASK_STATUSES}")
            return reply["task_status"]
        return self.function_call("check_task_solvable", {"task": json.dumps(task)}, read=read)

    def select_better_answer(self, task: dict, indices: list[int], answers: list[dict]) -> int:
        answers = copy.deepcopy(answers)
        if all(a["final_answer"] == answers[0]["final_answer"]
               and str(a["answer_details"]) == str(answers[0]["answer_details"]) for a in answers[1:]):
            return self.rng.choice(indices)

        def read(reply):
            index = int(reply["index"])
            if index not in indices:
                raise ValueError(f"index {index} is not one of {indices}")
            return index
        return self.function_call("select_better_answer", {
            "query": task["query"], "answer_0": json.dumps(answers[0]), "answer_1": json.dumps(answers[1])},
            return_reason=True, read=read)

    def _normalized(self, task: dict, answers: list[dict]) -> int:
        status = [self.check_is_solved(task["query"], a) for a in answers]
        solved = [i for i, s in enumerate(status) if s == "Solved"]
        if len(solved) == 1:
            return solved[0]
        if len(solved) > 1:  # the task counts as solvable without asking
            return self.select_better_answer(task, solved, [answers[i] for i in solved])
        unsure = [i for i, s in enumerate(status) if s == "Unsure"]
        if len(unsure) == 1:
            return unsure[0]
        if len(unsure) > 1:
            self.check_task_solvable(task)  # asked upstream; its answer does not reach the selection prompt
            return self.select_better_answer(task, unsure, [answers[i] for i in unsure])
        self.check_task_solvable(task)
        return self.select_better_answer(task, list(range(len(answers))), answers)

    def preference(self, query: str, tools: list[dict], answers: list[dict]) -> int:
        """``annotate_preference`` (no multisample): the index in ``answers`` of the preferred answer."""
        answers = [copy.deepcopy(a) for a in answers]
        for a in answers:
            a["final_answer"] = a["final_answer"][:1000]
            a["answer_details"] = a["answer_details"][:3000]
            a.pop("method", None)
        tools = copy.deepcopy(tools)
        for tool in tools:
            tool.pop("description", None)
            tool.pop("parameters", None)
        order = list(range(len(answers)))
        self.rng.shuffle(order)
        preferred = self._normalized({"query": query, "available_tools": tools}, [answers[i] for i in order])
        return order.index(preferred)


# --- aggregation ----------------------------------------------------------------------------------------------


def pass_rate(labels: dict) -> dict:
    """``eval_pass_rate.py``'s figures from ``{query_id: [label of round 0, label of round 1, ...]}``."""
    rounds = max((len(v) for v in labels.values()), default=0)
    scores = [sum(SCORES[v[r]] for v in labels.values() if r < len(v)) / len(labels) for r in range(rounds)]
    if not scores:
        return {"sopr": None, "sopr_std": None, "sopr_per_round": []}
    mean = sum(scores) / len(scores)
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    return {"sopr": 100 * mean, "sopr_std": 100 * std, "sopr_per_round": [100 * s for s in scores]}


def win_rate(judge: ToolEvalJudge, query_ids: list[str], reference: dict, candidate: dict,
             rounds: int = PREFERENCE_ROUNDS) -> dict:
    """``eval_preference.py``: the candidate's win, tie and lose rates against the reference, per query."""
    counts = {qid: {"reference": 0, "candidate": 0} for qid in query_ids}
    for _ in range(rounds):
        for qid in query_ids:
            if qid not in reference:
                counts[qid]["candidate"] += 1
                continue
            if qid not in candidate:
                counts[qid]["reference"] += 1
                continue
            ref = reference[qid]
            answers = [ref["answer"], candidate[qid]["answer"]]
            preferred = judge.preference(ref["query"], ref["available_tools"], answers)
            counts[qid]["reference" if preferred == 0 else "candidate"] += 1
    outcome = {qid: ("win" if c["candidate"] > c["reference"] else "lose" if c["candidate"] < c["reference"] else "tie")
               for qid, c in counts.items()}
    n = max(len(outcome), 1)
    return {"sowr": 100 * sum(o == "win" for o in outcome.values()) / n,
            "tie_rate": 100 * sum(o == "tie" for o in outcome.values()) / n,
            "lose_rate": 100 * sum(o == "lose" for o in outcome.values()) / n,
            "outcomes": outcome, "rounds": rounds}


def load_reference_answers(path: str | Path) -> dict:
    """``{group: {query_id: example}}`` from a converted-answer folder (``<group>.json`` files, as
    ``<converted_answer_path>/<model>/``) or ``{"*": ...}`` from one such file."""
    path = Path(path).expanduser()
    if path.is_file():
        return {"*": {str(k): v for k, v in json.loads(path.read_text()).items()}}
    if not path.is_dir():
        raise FileNotFoundError(f"reference answers {str(path)!r} (env.judge.reference_answers) are neither a "
                                "converted-answer file nor a folder of <group>.json files")
    return {f.stem: {str(k): v for k, v in json.loads(f.read_text()).items()} for f in sorted(path.glob("*.json"))}


# --- ToolMaster's side: episodes in, report figures out ------------------------------------------------------


def make_judge(judge_cfg, client=None) -> ToolEvalJudge:
    from toolmaster.llm.client import ChatClient

    return ToolEvalJudge(load_evaluator(judge_cfg.stabletoolbench_dir, judge_cfg.evaluator),
                         client or ChatClient(judge_cfg))


def samples(judge_cfg) -> int:
    return judge_cfg.runs or PASS_RATE_SAMPLES


def episode_answer(task, messages: list[dict], answer: str | None, finish_reason: str) -> dict:
    return converted_answer(task.question, list(task.schemas), messages, answer if finish_reason == "answer" else "")


def sopr_judgments(judge: ToolEvalJudge, task, episode, rounds: int) -> tuple[float, dict]:
    """The episode's grade (its mean score over the rounds) and its score in each round, by name."""
    example = episode_answer(task, episode.messages, episode.answer, episode.finish_reason)
    scores = [SCORES[judge.pass_label(example)] for _ in range(rounds)]
    return sum(scores) / len(scores), {f"{ROUND}{i}": s for i, s in enumerate(scores)}


def judge_summary(judge_cfg) -> dict:
    """What the report says about the judge."""
    official = bool(judge_cfg.stabletoolbench_dir)
    return {"model": judge_cfg.model, "base_url": judge_cfg.base_url,
            "samples": samples(judge_cfg) if official else (judge_cfg.runs or 1),
            "procedure": (f"StableToolBench tooleval ({judge_cfg.evaluator}, {judge_cfg.stabletoolbench_dir})"
                          if official else "ToolMaster's own judge prompt (not comparable with published tables)")}


def report_figures(judge_cfg, tasks: list, records: list[dict], judge: ToolEvalJudge | None = None) -> dict:
    """The judge's summary, SoPR's std over rounds and, with reference answers, SoWR (overall and per group)."""
    out = {"judge": judge_summary(judge_cfg)}
    if not judge_cfg.stabletoolbench_dir:
        return out
    labels = {r["episode_id"]: [_label(v) for _, v in sorted(
        ((k, v) for k, v in r.get("judgments", {}).items() if k.startswith(ROUND)), key=_round)]
        for r in records if not r.get("error")}
    labels.update({r["episode_id"]: ["Unsolved"] * samples(judge_cfg) for r in records if r.get("error")})
    if labels and all(labels.values()):
        out["sopr_std"] = pass_rate(labels)["sopr_std"]
    if judge_cfg.reference_answers:
        judge = judge or make_judge(judge_cfg)
        reference = load_reference_answers(judge_cfg.reference_answers)
        groups = defaultdict(list)
        for task, record in zip(tasks, records):
            groups[task.metadata.get("group", "*")].append((task, record))
        results = {}
        for group, items in groups.items():
            ref = reference.get(group, reference.get("*", {}))
            candidate = {str(t.metadata["query_id"]): episode_answer(t, r.get("messages", []), r.get("answer"),
                                                                      r.get("finish_reason", ""))
                         for t, r in items if not r.get("error")}
            ids = [str(t.metadata["query_id"]) for t, _ in items]
            results[group] = win_rate(judge, ids, ref, candidate, judge_cfg.preference_rounds)
        outcomes = [o for res in results.values() for o in res["outcomes"].values()]
        n = max(len(outcomes), 1)
        out["sowr"] = 100 * outcomes.count("win") / n
        out["sowr_tie_rate"] = 100 * outcomes.count("tie") / n
        out["sowr_detail"] = {"reference_answers": judge_cfg.reference_answers, "rounds": judge_cfg.preference_rounds,
                              "groups": {g: {k: v for k, v in res.items() if k != "outcomes"}
                                         for g, res in sorted(results.items())}}
    return out


def _round(item) -> int:
    return int(item[0].rsplit("_", 1)[-1])


def _label(score: float) -> str:
    return {1.0: "Solved", 0.5: "Unsure", 0.0: "Unsolved"}[score]
