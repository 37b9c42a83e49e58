"""Planted k-SAT, generated, formatted, parsed and scored as Affine's validator does.

Planting (one literal of every clause agrees with a hidden assignment) makes every instance satisfiable without a
solver; ``n_vars``, ``k`` and ``clause_ratio`` are the difficulty knobs (recipe: 10–20, 3–5, 4.2; Affine: 15, 10, 4.26).
The score accepts *any* satisfying assignment, not only the planted one, exactly like the reference.
The prompt is ``affine/envs/prompts/sat.txt`` (fields ``k``, ``n``, ``formula``) or the ``prompt_file`` given.
"""

from __future__ import annotations

import random
import re
from typing import Any

from affine.envs.base import Challenge, check_split
from affine.envs.templates import PromptTemplate

_ASSIGNMENT = re.compile(r"x(\d+)=(True|False|1|0)")
EVAL_SEED_OFFSET = 1_000_000_000


def plant(rng: random.Random, n: int, k: int, m: int) -> tuple[list[list[int]], dict[int, bool]]:
    """``m`` clauses of ``k`` distinct variables over x1..xn, each satisfied by the hidden assignment."""
    hidden = {v: rng.random() < 0.5 for v in range(1, n + 1)}
    clauses = []
    for _ in range(m):
        variables = rng.sample(range(1, n + 1), k)
        keep = rng.randrange(k)
        clause = []
        for i, v in enumerate(variables):
            positive = hidden[v] if i == keep else rng.random() < 0.5
            clause.append(v if positive else -v)
        clauses.append(clause)
    return clauses, hidden


def formula_text(clauses: list[list[int]]) -> str:
    def literal(x: int) -> str:
        return f"x{x}" if x > 0 else f"¬x{-x}"

    return " ∧ ".join("(" + " ∨ ".join(literal(x) for x in clause) + ")" for clause in clauses)


def parse_assignment(reply: str) -> dict[int, bool]:
    """Every ``x<i>=<value>`` match, later ones overriding earlier ones; ``True``/``1`` are true."""
    return {int(var): value in ("True", "1") for var, value in _ASSIGNMENT.findall(reply)}


def satisfies(clauses: list[list[int]], assignment: dict[int, bool]) -> bool:
    """A variable missing from ``assignment`` makes none of its literals true."""
    return all(any(abs(x) in assignment and assignment[abs(x)] == (x > 0) for x in clause) for clause in clauses)


def format_assignment(assignment: dict[int, bool]) -> str:
    return ", ".join(f"x{v}={assignment[v]}" for v in sorted(assignment))


class SAT:
    name = "affine:sat"

    def __init__(
        self,
        n_vars: tuple[int, int] | list[int] = (10, 20),
        k: tuple[int, int] | list[int] = (3, 5),
        clause_ratio: float = 4.2,
        split: str = "train",
        prompt_file: str | None = None,
        **_: Any,
    ) -> None:
        check_split(split)
        self.template = PromptTemplate(self.name, prompt_file)
        self.n_vars = tuple(n_vars)
        self.k = tuple(k)
        self.clause_ratio = clause_ratio
        self.split = split

    def sample(self, seed: int) -> Challenge:
        # Eval seeds live in a disjoint range, so no eval instance can be drawn by the train split.
        rng = random.Random(seed + (EVAL_SEED_OFFSET if self.split == "eval" else 0))
        n = rng.randint(*self.n_vars)
        k = min(rng.randint(*self.k), n)
        m = max(1, int(self.clause_ratio * n))
        clauses, hidden = plant(rng, n, k, m)
        prompt = self.template.render(k=k, n=n, formula=formula_text(clauses))
        return {
            "env": self.name,
            "task_id": f"sat-{self.split}-{seed}",
            "seed": seed,
            "prompt": prompt,
            "clauses": clauses,
            "n_vars": n,
            "solution": {str(v): b for v, b in hidden.items()},
        }

    def score(self, challenge: Challenge, reply: str) -> float:
        if not isinstance(reply, str):
            return 0.0
        return 1.0 if satisfies(challenge["clauses"], parse_assignment(reply)) else 0.0

    def solution(self, challenge: Challenge) -> str:
        return format_assignment({int(v): b for v, b in challenge["solution"].items()})
