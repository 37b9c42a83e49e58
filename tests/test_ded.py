"""DED: code extraction, test-case parsing and Affine's all-must-pass scoring on tricky replies."""

from __future__ import annotations

import json

import pytest

from affine.envs.base import SingleTurnTask, make
from affine.envs.ded import DED, extract_code, normalize, parse_test_cases, to_text
from affine.sandbox import Limits

DOUBLE = "n = int(input())\nprint(n * 2)"
CASES = [
    {"type": "stdin_stdout", "input": "3", "output": "6\n", "fn_name": None},
    {"type": "stdin_stdout", "input": "10\n", "output": "20", "fn_name": None},
]
CHALLENGE = {"env": "affine:ded", "task_id": 0, "prompt": "double it", "test_cases": CASES, "program": DOUBLE}


@pytest.fixture(scope="module")
def ded() -> DED:
    return DED(limits=Limits(wall_s=5.0))


def fenced(code: str, lang: str = "python") -> str:
    return f"```{lang}\n{code}\n```"


def test_is_a_registered_single_turn_task(ded):
    assert isinstance(ded, SingleTurnTask) and ded.name == "affine:ded"
    assert isinstance(make("affine:ded", difficulty=3), DED)


def test_extract_code_order_of_preference():
    assert extract_code(f"{fenced('print(1)')}\ntext\n{fenced('print(2)')}") == "print(2)"  # the last python block
    assert extract_code(f"{fenced('print(1)')}\n{fenced('echo 2', 'bash')}") == "print(1)"  # python beats later bash
    assert extract_code(f"{fenced('print(3)', '')}\n{fenced('print(4)', 'py')}") == "print(4)"  # last of any language
    assert extract_code("```print(5)```") == "print(5)"  # loose fence
    assert extract_code("  print(6)\n") == "print(6)"  # no fence: the whole reply
    assert extract_code("") == ""


def test_values_to_text_and_normalize():
    assert to_text("a\n") == "a\n" and to_text([1, [2, "x"]]) == "1\n2\nx"
    assert to_text(3) == "3" and to_text(None) == "null" and to_text({"k": "é"}) == '{"k": "é"}'
    assert normalize("1  \n2\t\n\n\n") == "1\n2" and normalize("a\r\nb") == "a\nb"


def test_parse_test_cases_accepts_json_literals_and_dicts():
    cases = {"test_cases": [{"type": "stdin_stdout", "input": "1", "output": "1", "fn_name": None}]}
    assert parse_test_cases({"test_cases": json.dumps(cases)}) == cases["test_cases"]
    literal = "{'test_cases': [{'type': 'function_call', 'fn_name': 'f', 'input': [1, True], 'output': [None]}]}"
    assert parse_test_cases({"test_cases": literal})[0]["input"] == [1, True]
    assert parse_test_cases({"verification_info": cases, "test_cases": "{}"}) == cases["test_cases"]  # takes precedence
    for broken in ("{not json", "", None, "[1, 2]", '{"test_cases": "x"}'):
        assert parse_test_cases({"test_cases": broken}) == []


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (fenced(DOUBLE), 1.0),
        (f"Here:\n{fenced('print(0)')}\nFixed:\n{fenced(DOUBLE)}", 1.0),  # the last block counts
        (f"{fenced(DOUBLE)}\nOops:\n{fenced('print(0)')}", 0.0),
        (f"<think>try {fenced('print(0)')}</think>\n{fenced(DOUBLE)}", 1.0),
        (fenced("n = int(input())\nprint(n * 2, '  ')\nprint()\nprint()"), 1.0),  # trailing spaces and blank lines
        (fenced("import sys\nn = int(input())\nsys.stdout.write(str(2 * n) + '\\r\\n')"), 1.0),  # CRLF output
        (fenced("import sys\nn = int(input())\nprint(n * 2)\nsys.stderr.write('\\n  ')"), 1.0),  # blank stderr is ok
        (fenced("import warnings\nn = int(input())\nwarnings.warn('careful')\nprint(n * 2)"), 0.0),  # stderr fails
        (fenced("n = int(input())\nprint('answer:', n * 2)"), 0.0),
        (fenced("n = int(input())\nprint(6)"), 0.0),  # passes the first case only: all must pass
        (fenced("def solve():\n    return int(input()) * 2"), 1.0),  # Affine's solve() rerun rule
        (DOUBLE, 1.0),  # no fence: the whole reply is the program
        ("", 0.0),
        ("``` ``` ```python\n", 0.0),
        ("I cannot solve this.", 0.0),
    ],
)
def test_scores_tricky_replies(ded, reply, expected):
    assert ded.score(CHALLENGE, reply) == expected


def test_function_call_cases(ded):
    cases = [
        {"type": "function_call", "fn_name": "add", "input": [2, 3], "output": [5]},
        {"type": "function_call", "fn_name": "add", "input": ["a", "b"], "output": ["ab"]},
    ]
    challenge = dict(CHALLENGE, test_cases=cases)
    assert ded.score(challenge, fenced("def add(a, b):\n    return a + b")) == 1.0
    assert ded.score(challenge, fenced("def add(a, b):\n    return b + a")) == 0.0
    lists = dict(CHALLENGE, test_cases=[{"type": "function_call", "fn_name": "f", "input": [], "output": [[1, 2]]}])
    assert ded.score(lists, fenced("def f():\n    return [1, 2]")) == 0.0  # Affine compares with '1\n2', not '[1, 2]'
    assert ded.score(lists, fenced("def f():\n    return '1\\n2'")) == 1.0


def test_unknown_types_are_skipped_and_no_cases_scores_zero(ded):
    mixed = dict(CHALLENGE, test_cases=[{"type": "interactive", "input": "", "output": ""}, *CASES])
    assert ded.score(mixed, fenced(DOUBLE)) == 1.0
    assert ded.score(dict(CHALLENGE, test_cases=[]), fenced(DOUBLE)) == 0.0
    assert ded.score({"prompt": "x"}, fenced(DOUBLE)) == 0.0
    only_unknown = dict(CHALLENGE, test_cases=[{"type": "interactive", "input": "", "output": ""}])
    assert ded.score(only_unknown, fenced(DOUBLE)) == 1.0  # Affine's 0-of-0 quirk, kept on purpose


def test_malformed_replies_never_raise(ded):
    assert ded.score(CHALLENGE, None) == 0.0  # type: ignore[arg-type]
    assert ded.score({"test_cases": [None, 3]}, fenced(DOUBLE)) == 0.0
    assert DED(limits=Limits(wall_s=0.5)).score(CHALLENGE, fenced("while True:\n    pass")) == 0.0


@pytest.mark.parametrize("difficulty", [1, 3])
def test_offline_challenges_are_solved_by_their_solution(difficulty):
    task = DED(difficulty=difficulty)
    for seed in range(2):
        challenge = task.sample(seed)
        assert set(challenge) >= {"env", "task_id", "prompt", "test_cases"} and challenge == task.sample(seed)
        assert json.loads(json.dumps(challenge)) == challenge
        assert "```python" in challenge["prompt"] and len(challenge["test_cases"]) >= 3
        assert all(set(c) == {"type", "input", "output", "fn_name"} for c in challenge["test_cases"])
        assert task.score(challenge, task.solution(challenge)) == 1.0
        assert task.score(challenge, fenced("print(0)")) == 0.0


# The validator's scores on replies where its fence rules differ from the obvious ones (issue 17's table).
SUM_CASES = [
    {"type": "stdin_stdout", "input": "1 5", "output": "6", "fn_name": None},
    {"type": "stdin_stdout", "input": "2 3", "output": "5", "fn_name": None},
]
SUM_CHALLENGE = dict(CHALLENGE, test_cases=SUM_CASES)
SUM_CODE = "a, b = map(int, input().split())\nprint(a + b)"


@pytest.mark.parametrize(
    ("reply", "code", "validator_score"),
    [
        # "``` python" (a space): no block pattern matches, the loose fence keeps the word python -> NameError
        (f"``` python\n{SUM_CODE}\n```", f"python\n{SUM_CODE}", 0.0),
        # only inline fences: the validator takes the first one (print(6) passes case 1, fails case 2)
        ("Try ```print(6)``` or better ```a, b = map(int, input().split()); print(a + b)```", "print(6)", 0.0),
        # code on the fence line: only the loose fence matches, and it keeps the code
        ("```python a, b = map(int, input().split()); print(a + b)\n```", "a, b = map(int, input().split()); "
         "print(a + b)", 1.0),
        # a later block with a two-word tag is not a block to the validator: the earlier python block wins
        (f"```python\n{SUM_CODE}\n```\n```python3 extra\nprint(0)\n```", SUM_CODE, 1.0),
        # a one-word tag other than python counts as a block; the last one wins
        (f"```py\nprint(0)\n```\n```text\n{SUM_CODE}\n```", SUM_CODE, 1.0),
    ],
)  # fmt: skip
def test_code_extraction_matches_the_validator(ded, reply, code, validator_score):
    assert extract_code(reply) == code
    assert ded.score(SUM_CHALLENGE, reply) == validator_score
