"""Errors raised by the rule language: one exception type carrying every problem found."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem in a rule: where (a JSON path such as ``$.and[1].value``) and what, in plain words."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class RuleError(ValueError):
    """A rule (JSON or text) is not valid. ``problems`` lists every problem found, in document order."""

    def __init__(self, problems: list[Problem] | Problem | str, path: str = "$") -> None:
        if isinstance(problems, str):
            problems = [Problem(path, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in self.problems) or "invalid rule")

    def as_json(self) -> list[dict[str, str]]:
        return [p.as_dict() for p in self.problems]
