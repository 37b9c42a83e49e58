"""``affine score`` and ``affine sandbox run`` with hostile input: one clear line and exit 2, never a traceback.

300 seeded mutations of a real challenge per Affine env (keys dropped, values of the wrong type, non-dict test cases,
deeply nested JSON); each must give exit 0 with a score or exit 2 with one ``error:`` line."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from sandbox_host import require_sandbox

from affine import cli
from affine.envs import rl_python
from affine.sandbox import RunResult

require_sandbox()
ENVS = ["affine:sat", "affine:abd", "affine:ded"]
ODD_VALUES = [None, 0, -1, 1e308, "", "x", [], [1, "a"], {}, {"a": 1}, True, "[[[[", "{'test_cases': 5}", [[[[]]]]]


def sample(env: str, capsys: pytest.CaptureFixture) -> dict:
    assert cli.main(["sample", env, "--seed", "3"]) == 0
    return json.loads(capsys.readouterr().out)


def mutate(challenge: dict, rng: random.Random) -> object:
    c = json.loads(json.dumps(challenge))
    kind = rng.randrange(8)
    keys = list(c)
    if kind == 0 and keys:
        del c[rng.choice(keys)]
    elif kind in (1, 2) and keys:
        c[rng.choice(keys)] = rng.choice(ODD_VALUES)
    elif kind == 3:
        cases = c.get("test_cases")
        c["test_cases"] = [rng.choice(ODD_VALUES) for _ in range(3)] if rng.random() < 0.5 else json.dumps(cases)[:7]
    elif kind == 4:
        return rng.choice([[c], "challenge", 5, None])  # not an object at all
    elif kind == 5:
        for key in rng.sample(keys, k=min(3, len(keys))):
            c[key] = rng.choice(ODD_VALUES)
    elif kind == 6 and isinstance(c.get("clauses"), list) and c["clauses"]:
        c["clauses"][0] = rng.choice([["a"], [0], "1 2", None, [[1]], [10**30]])
    else:
        c[rng.choice(keys or ["x"])] = {"deep": [[[[{"x": [1] * 3}]]]]}
    return c


@pytest.mark.parametrize("env", ENVS)
def test_300_mutated_challenges_give_no_traceback(env, tmp_path: Path, capsys, monkeypatch):
    built = cli._build(env, cli.parser().parse_args(["sample", env]))  # one env: building it is not under test
    monkeypatch.setattr(cli, "_build", lambda name, args: built)
    real_run, calls = rl_python.run_program, []

    def every_tenth_run(program: str, stdin: str, limits: object) -> RunResult:
        """Programs run for real one time in ten (a run is ~0.1 s: 300 would take a minute); the rest get what a
        silent program gives, after the same argument checks a real run makes."""
        calls.append(1)
        if len(calls) % 10 == 1:
            return real_run(program, stdin, limits)
        program.encode(), stdin.encode()
        return RunResult("", "", 0)

    monkeypatch.setattr(rl_python, "run_program", every_tenth_run)
    rng, base = random.Random(16), sample(env, capsys)
    reply = tmp_path / "reply.txt"
    replies = ["", "x = 1", "```python\nprint(1)\n```", "<INPUT>\n1\n</INPUT>", "1=True 2=False 3=True"]
    challenge, codes = tmp_path / "c.json", []
    for i in range(300):
        challenge.write_text(json.dumps(mutate(base, rng)))
        reply.write_text(replies[i % len(replies)])
        code = cli.main(["score", env, "--challenge", str(challenge), "--response", str(reply)])  # raises = traceback
        out, err = capsys.readouterr()
        assert code in (0, 2), (code, out, err)
        if code == 2:
            assert err.startswith("error: ") and err.count("\n") == 1, err
        else:
            assert 0.0 <= json.loads(out)["score"] <= 1.0
        codes.append(code)
    assert codes.count(2) > 20  # the mutations do hit bad input


def test_deeply_nested_and_non_object_challenges(tmp_path: Path, capsys):
    reply = tmp_path / "r.txt"
    reply.write_text("x")
    for text in ("[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000, "[1, 2]", "{not json"):
        path = tmp_path / "c.json"
        path.write_text(text)
        assert cli.main(["score", "affine:ded", "--challenge", str(path), "--response", str(reply)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err[:300]


def test_sandbox_run_reports_a_cpu_limit_kill_as_a_timeout(tmp_path: Path, capsys):
    program = tmp_path / "busy.py"
    program.write_text("import os\nos.fork()\nwhile True:\n    pass\n")
    params = tmp_path / "params.yaml"
    params.write_text("sandbox:\n  isolation: namespaces\n")
    assert cli.main(["sandbox", "run", str(program), "--params", str(params), "--cpu-s", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["timed_out"] is True and result["stderr"].endswith("[TIMEOUT]"), result
    params.write_text("sandbox:\n  isolation: userns\n")
    assert cli.main(["sandbox", "run", str(program), "--params", str(params)]) == 2
    assert "sandbox.isolation" in capsys.readouterr().err


def test_a_stage_stops_with_one_line_when_the_sandbox_cannot_be_set_up(capsys):
    from affine import sandbox
    from affine.stage import run

    with pytest.raises(SystemExit) as stop:
        run(lambda params: sandbox.configure(packages=["no_such_pkg"]))
    assert stop.value.code == 2
    # stage start-up logs (timestamped records, e.g. the thread choice) aside, stderr is that one line: no traceback
    lines = [line for line in capsys.readouterr().err.splitlines() if not re.match(r"\d{4}-\d\d-\d\d \d\d:", line)]
    assert len(lines) == 1 and lines[0].startswith("error: sandbox.packages: 'no_such_pkg' is not installed")
