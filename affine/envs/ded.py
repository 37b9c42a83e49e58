"""DED (deduction): read a problem statement, write the program; it must pass every test case.

Scoring reproduces Affine's DED: the code is what the validator's fence rules extract
(:func:`affine.envs.rl_python.strip_fences`: the last ```python block, else the last block with a one-word tag or
none, else the *first* loose fence, else the whole reply).  ``stdin_stdout`` cases feed the input (newline
appended) and compare stdout; ``function_call`` cases append a main guard calling ``fn_name(*input)`` and compare
the printed result with the first expected value.  A case passes when stderr is blank and the normalized outputs
are equal; the score is 1 only if every case passes (we stop at the first failure).  Unknown case types are skipped
and do not count; a row without test cases scores 0.  (As in Affine, a row whose cases are all of unknown types
scores 1: 0 of 0 passed.)
"""

from __future__ import annotations

import ast
import json
import logging
from typing import Any

from affine.envs.rl_python import RLPythonTask, strip_fences

log = logging.getLogger(__name__)

# The program DED runs for a reply: the validator strips the reply's fences exactly as its executor does.
extract_code = strip_fences


def to_text(value: Any) -> str:
    """A test-case value as text: strings as they are, lists one item per line (recursively), the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return value.decode()
    if isinstance(value, list):
        return "\n".join(to_text(item) for item in value)
    return json.dumps(value, ensure_ascii=False)


def normalize(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def parse_test_cases(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's cases from ``verification_info`` or ``test_cases`` (JSON, else a Python literal); [] if unreadable."""
    raw = row.get("verification_info") or row.get("test_cases")
    try:
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raw = ast.literal_eval(raw)
        cases = raw.get("test_cases") if isinstance(raw, dict) else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return []
    return [dict(case) for case in cases if isinstance(case, dict)] if isinstance(cases, list) else []


def case_run(program: str, case: dict[str, Any]) -> tuple[str, str, str] | None:
    """``(program to run, stdin, expected stdout)`` for a case, or None for a type Affine skips."""
    kind = case.get("type")
    if kind == "stdin_stdout":
        stdin = to_text(case.get("input"))
        return program, stdin if stdin.endswith("\n") else stdin + "\n", to_text(case.get("output"))
    if kind == "function_call":
        args, expected = case.get("input", []), case.get("output")
        call = f"\nif __name__ == '__main__':\n    result = {case.get('fn_name')}(*{args!r})\n    print(result)"
        return program + call, "", to_text(expected[0] if isinstance(expected, list) and expected else expected)
    return None


class DED(RLPythonTask):
    """``DED(source="offline", difficulty=1, dataset=None, buffer_size=5, split="train", prompt_file=None, ...)``.

    See RLPythonTask; the prompt is ``affine/envs/prompts/ded.txt`` (field ``prompt``, the problem statement, then our
    answer instructions) or ``prompt_file``.
    """

    name = "affine:ded"

    def sample(self, seed: int) -> dict[str, Any]:
        index, row = self.rows.row(seed)
        return {
            "env": self.name,
            "task_id": f"{self.name.split(':')[1]}-{self.rows.split}-{row.get('row_id', index)}",
            "row_index": index,
            "seed": seed,
            "prompt": self.template.render(prompt=str(row.get("prompt") or "").rstrip()),
            "test_cases": parse_test_cases(row),
            "program": row.get("program") or "",
        }

    def score(self, challenge: dict[str, Any], reply: str) -> float:
        try:
            program = extract_code(reply if isinstance(reply, str) else "")
            cases = challenge.get("test_cases") or []
            if not cases:
                return 0.0
            for case in cases:
                job = case_run(program, case)
                if job is None:
                    continue
                run = self.execute(job[0], job[1])
                if run.stderr.strip() or normalize(run.stdout) != normalize(job[2]):
                    return 0.0
            return 1.0
        except RuntimeError:
            raise
        except Exception as exc:  # a malformed reply or challenge scores 0, never crashes a run
            log.debug("DED scoring failed: %r", exc)
            return 0.0

    def solution(self, challenge: dict[str, Any]) -> str:
        return f"```python\n{challenge['program'].strip()}\n```"
