"""Per-episode counters: trial calls, execution calls, errors and self-corrections.

The tracker keeps an ordered event log and derives the counters from it, because whether early calls
were trials is only known once (and if) an ``<experience>`` note appears.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EpisodeStats:
    events: list = field(default_factory=list)  # ("call", tool, ok) | ("experience",) | ("parse_error",) | ("turn",)

    def record_turn(self, experience_written: bool, parse_errors: int) -> None:
        self.events.append(("turn",))
        if experience_written:
            self.events.append(("experience",))
        self.events.extend([("parse_error",)] * parse_errors)

    def record_call(self, tool: str | None, ok: bool) -> None:
        self.events.append(("call", tool, ok))

    def summary(self) -> dict:
        """A call to a tool is a trial call when an experience note follows it before the tool is used
        for real: calls to a tool before the first note written after that tool's first call (all trials
        up front then one note, or trial → note → use per tool). Calls not followed by a note are
        execution calls. A correction is an execution call that succeeds on a tool whose execution call
        failed before; each failure is corrected at most once."""
        notes = [i for i, e in enumerate(self.events) if e[0] == "experience"]
        first_call: dict = {}
        trial = execution = failed = corrections = 0
        first_failed_execution_turn = None
        pending: dict[str, int] = {}
        turn = -1
        for i, event in enumerate(self.events):
            if event[0] == "turn":
                turn += 1
            if event[0] != "call":
                continue
            _, tool, ok = event
            failed += not ok
            first = first_call.setdefault(tool, i)
            note_after = next((n for n in notes if n > first), None)
            if note_after is not None and i < note_after:
                trial += 1
                continue
            execution += 1
            if not ok:
                if first_failed_execution_turn is None:
                    first_failed_execution_turn = turn
                pending[tool] = pending.get(tool, 0) + 1
            elif pending.get(tool):
                pending[tool] -= 1
                corrections += 1
        return {
            "turns": sum(e[0] == "turn" for e in self.events),
            "trial_calls": trial,
            "execution_calls": execution,
            "failed_calls": failed,
            "parse_errors": sum(e[0] == "parse_error" for e in self.events),
            "corrections": corrections,
            "wrote_experience": bool(notes),
            # the assistant turn (0-based) whose execution call failed first; None: none failed
            "first_failed_execution_turn": first_failed_execution_turn,
        }
