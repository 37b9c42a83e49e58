"""ABD (abduction): given a program and the output it printed, give an input that makes it print that output.

Scoring reproduces Affine's ABD: drop ``<think>``/``<thinking>`` blocks, take the last ``<INPUT>…</INPUT>`` block,
check the line count against the program's ``input()`` calls, run the program on it in the sandbox; any stderr
scores 0, otherwise the output must match the expected one exactly, after strip and CRLF→LF, or line by line after
right-stripping each line.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from affine.envs.rl_python import RLPythonTask

log = logging.getLogger(__name__)

_THINK = (re.compile(r"<think>.*?</think>", re.DOTALL), re.compile(r"<thinking>.*?</thinking>", re.DOTALL))
_INPUT = re.compile(r"<INPUT>(.*?)</INPUT>", re.IGNORECASE | re.DOTALL)
_LOOP = "for _ in range(int(input()))"


def extract_input(reply: str) -> str:
    """The last ``<INPUT>`` block once think blocks are gone: stripped, lines right-stripped, no trailing blanks."""
    for pattern in _THINK:
        reply = pattern.sub("", reply)
    blocks = _INPUT.findall(reply)
    if not blocks:
        return ""
    lines = [line.rstrip() for line in blocks[-1].strip().splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def input_is_plausible(program: str, given: str) -> bool:
    """Affine's pre-check: enough lines for the ``input()`` calls, or for the count read by the classic loop."""
    lines = given.splitlines() if given else []
    if _LOOP in program and lines and lines[0].isdigit():
        return len(lines) > int(lines[0])
    return len(lines) >= program.count("input()")


def as_stdin(text: str) -> str:
    """The stdin the validator feeds: a newline appended when missing, but empty input stays ``""`` (not ``"\\n"``)."""
    return text + "\n" if text and not text.endswith("\n") else text


def outputs_match(expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    expected, actual = expected.strip().replace("\r\n", "\n"), actual.strip().replace("\r\n", "\n")
    if expected == actual:
        return True
    return [line.rstrip() for line in expected.splitlines()] == [line.rstrip() for line in actual.splitlines()]


class ABD(RLPythonTask):
    """``ABD(source="offline", difficulty=1, dataset=None, buffer_size=5, split="train", prompt_file=None, ...)``.

    See RLPythonTask; the prompt is ``affine/envs/prompts/abd.txt`` (fields ``program``, ``output``) or ``prompt_file``.
    """

    name = "affine:abd"

    def sample(self, seed: int) -> dict[str, Any]:
        index, row = self.rows.row(seed)
        program, inputs = row["program"], row.get("inputs") or ""
        expected = row.get("output") or ""
        if self.rows.source != "offline":  # generated rows were verified in the sandbox: their output is the run's
            run = self.execute(program, as_stdin(inputs))
            expected = run.stdout if not run.stderr and run.stdout.strip() else expected
        return {
            "env": self.name,
            "task_id": f"{self.name.split(':')[1]}-{self.rows.split}-{row.get('row_id', index)}",
            "row_index": index,
            "seed": seed,
            "prompt": self.template.render(program=program.rstrip(), output=expected.rstrip("\n")),
            "program": program,
            "expected_output": expected,
            "inputs": inputs,
        }

    def score(self, challenge: dict[str, Any], reply: str) -> float:
        try:
            reply = reply if isinstance(reply, str) else ""
            program = challenge["program"]
            given = extract_input(reply)
            if not given and not _INPUT.search(reply):
                return 0.0
            if not input_is_plausible(program, given):
                return 0.0
            run = self.execute(program, as_stdin(given))
            if run.stderr:
                return 0.0
            return 1.0 if outputs_match(challenge["expected_output"], run.stdout) else 0.0
        except RuntimeError:
            raise
        except Exception as exc:  # a malformed reply or challenge scores 0, never crashes a run
            log.debug("ABD scoring failed: %r", exc)
            return 0.0

    def solution(self, challenge: dict[str, Any]) -> str:
        given = "\n".join(line.rstrip() for line in challenge["inputs"].rstrip("\n").splitlines())
        return (
            "Tracing the program backwards from the output it printed, this input reproduces it exactly:\n"
            f"<INPUT>\n{given}\n</INPUT>"
        )
