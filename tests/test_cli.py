"""The `affine` command: list, sample, score, sandbox, compare — and clear errors on bad input."""

import json
import subprocess
import sys

import pytest
from conftest import HANG_GUARD_S

from affine.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_envs_lists_all_eight(capsys):
    code, out, _ = run(capsys, "envs")
    names = [line.split("\t")[0] for line in out.strip().splitlines()]
    assert code == 0 and len(names) == 8 and "affine:sat" in names and "agentgym:textcraft" in names


def test_sample_then_score_roundtrip(capsys, tmp_path):
    code, out, _ = run(capsys, "sample", "affine:sat", "--seed", "3", "--n", "2")
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0 and len(lines) == 2 and {"prompt", "clauses", "task_id"} <= set(lines[0])
    challenge = tmp_path / "c.json"
    challenge.write_text(json.dumps(lines[0]))
    good = tmp_path / "good.txt"
    good.write_text(", ".join(f"x{v}={b}" for v, b in lines[0]["solution"].items()))
    bad = tmp_path / "bad.txt"
    bad.write_text("I don't know")
    assert (
        json.loads(run(capsys, "score", "affine:sat", "--challenge", str(challenge), "--response", str(good))[1])[
            "score"
        ]
        == 1.0
    )
    assert (
        json.loads(run(capsys, "score", "affine:sat", "--challenge", str(challenge), "--response", str(bad))[1])[
            "score"
        ]
        == 0.0
    )


def test_sample_is_deterministic(capsys):
    a = run(capsys, "sample", "affine:abd", "--seed", "1")[1]
    b = run(capsys, "sample", "affine:abd", "--seed", "1")[1]
    assert a == b and json.loads(a)["program"]


def test_multi_turn_sample_shows_first_observation(capsys):
    code, out, _ = run(capsys, "sample", "agentgym:textcraft", "--seed", "0")
    record = json.loads(out)
    assert code == 0 and "Goal" in record["prompt"] and record["instructions"]


def test_bad_challenge_file_is_one_error_line(capsys, tmp_path):
    broken = tmp_path / "c.json"
    broken.write_text("{not json")
    reply = tmp_path / "r.txt"
    reply.write_text("x1=True")
    code, _, err = run(capsys, "score", "affine:sat", "--challenge", str(broken), "--response", str(reply))
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "score", "affine:sat", "--challenge", str(tmp_path / "missing"), "--response", "x")
    assert code == 2 and err.startswith("error:")


def test_unknown_env_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "affine:chess"])


def test_sandbox_run_reports_json(tmp_path):
    program = tmp_path / "p.py"
    program.write_text("print(int(input()) * 2)")
    stdin = tmp_path / "in.txt"
    stdin.write_text("21\n")
    out = subprocess.run(
        [sys.executable, "-m", "affine.cli", "sandbox", "run", str(program), "--stdin", str(stdin)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    result = json.loads(out.stdout)
    assert result["stdout"] == "42\n" and result["returncode"] == 0 and not result["timed_out"]


def test_play_with_expert_moves(monkeypatch, capsys):
    answers = iter(["expert"] * 30)
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    code, out, _ = run(capsys, "play", "agentgym:textcraft", "--seed", "2")
    assert code == 0 and "episode finished: success" in out


def test_compare_prints_table_and_frontier(capsys, tmp_path):
    from affine.eval.metrics import build_results

    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(build_results("base", None, {"affine:sat": [0, 0, 1, 0]})))
    b.write_text(json.dumps(build_results("sft", None, {"affine:sat": [1, 1, 1, 0]})))
    code, out, _ = run(capsys, "compare", str(a), str(b))
    assert code == 0 and "sft dominates base" in out and "frontier" in out.lower()
