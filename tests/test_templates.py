"""Prompt templates: the shipped defaults, ``envs.<task>.prompt_file`` reaching every stage, and bad templates."""

import hashlib
import json
import random
from pathlib import Path

import pytest

from affine.config import ParamsError, load_params, parse_params
from affine.envs.abd import ABD
from affine.envs.ded import DED
from affine.envs.options import build_env
from affine.envs.sat import SAT, parse_assignment
from affine.envs.templates import DEFAULT_DIR, PromptTemplate

ROOT = Path(__file__).resolve().parents[1]


def challenges_digest(task_cls, split: str, n: int = 30) -> str:
    digest = hashlib.sha256()
    task = task_cls(split=split)
    for seed in range(n):
        digest.update(json.dumps(task.sample(seed), sort_keys=True).encode())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize(
    ("task_cls", "split", "digest"),
    [
        (ABD, "train", "79958c83c0f6adb3"),
        (ABD, "eval", "d475ffd0888e9214"),
        (DED, "train", "269c2aeb8baa5150"),
        (DED, "eval", "6edd2747e826ed14"),
    ],
)
def test_default_abd_and_ded_prompts_did_not_change(task_cls, split, digest):
    """The shipped templates render byte for byte what the code rendered before they moved to files (30 seeds)."""
    assert challenges_digest(task_cls, split) == digest


def test_default_templates_ask_for_the_exact_answer_formats():
    sat = SAT(n_vars=[4, 4], k=[3, 3]).sample(0)
    assert "`x1=True, x2=False, ...`" in sat["prompt"] and "UNSAT" in sat["prompt"] and "x1..x4" in sat["prompt"]
    assert parse_assignment(sat["prompt"]) == {1: True, 2: False}  # the example is in the parsed format
    assert "<INPUT>" in (DEFAULT_DIR / "abd.txt").read_text() and "</INPUT>" in (DEFAULT_DIR / "abd.txt").read_text()
    assert "```python" in (DEFAULT_DIR / "ded.txt").read_text()


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_prompt_files_reach_every_stage_through_params(tmp_path):
    params = parse_params(
        {
            "envs": {
                "sat": {
                    "n_vars": [4, 4],
                    "k": [2, 2],
                    "prompt_file": write(tmp_path / "s.txt", "SAT {k}/{n}: {formula}"),
                },
                "abd": {"prompt_file": write(tmp_path / "a.txt", "Program {{literal}}:\n{program}\n=> {output}")},
                "ded": {"prompt_file": write(tmp_path / "d.txt", "Solve:\n{prompt}\n")},
            }
        }
    )
    for split in ("train", "eval"):  # collect and rl build train envs, evaluate eval envs: all through build_env
        sat = build_env("affine:sat", params.envs, split).sample(0)
        assert sat["prompt"].startswith("SAT 2/4: (") and sat["prompt"].endswith(")")
        abd = build_env("affine:abd", params.envs, split).sample(0)
        assert abd["prompt"] == f"Program {{literal}}:\n{abd['program'].rstrip()}\n=> {abd['expected_output'].rstrip()}"
        ded = build_env("affine:ded", params.envs, split).sample(0)
        assert ded["prompt"].startswith("Solve:\n") and ded["prompt"].endswith("\n") and "```" not in ded["prompt"]


@pytest.mark.parametrize(
    ("task", "text", "message"),
    [
        ("affine:sat", "no fields", r"missing fields \['formula'\]"),
        ("affine:abd", "{program} {output} {answer}", r"unknown fields \['answer'\]"),
        ("affine:ded", "{prompt} and a lone { brace", "literal braces"),
        ("affine:ded", "{0}", "unknown fields"),
    ],
)
def test_bad_templates_give_one_line(tmp_path, task, text, message):
    path = write(tmp_path / "t.txt", text)
    with pytest.raises(ValueError, match=message):
        PromptTemplate(task, path)
    short = task.split(":")[1]
    with pytest.raises(ParamsError, match=f"envs.{short}.prompt_file: .*{message}"):
        parse_params({"envs": {short: {"prompt_file": path}}})


def test_missing_template_file_and_unknown_task(tmp_path):
    with pytest.raises(ParamsError, match="envs.abd.prompt_file: .*cannot read"):
        parse_params({"envs": {"abd": {"prompt_file": str(tmp_path / "absent.txt")}}})
    with pytest.raises(ValueError, match="no prompt template"):
        PromptTemplate("agentgym:webshop")


def test_validator_sat_config_draws_the_validators_formulas():
    raw = (ROOT / "configs/validator-sat.yaml").read_text()
    sat_params = load_params(ROOT / "configs/validator-sat.yaml").envs.sat
    assert (sat_params.n_vars, sat_params.k, sat_params.clause_ratio) == ([15, 15], [10, 10], 4.26) and "planted" in raw
    task = SAT(**sat_params.model_dump())
    for seed in random.Random(0).sample(range(10_000), 5):
        c = task.sample(seed)
        assert c["n_vars"] == 15 and len(c["clauses"]) == int(4.26 * 15) == 63
        assert all(len({abs(x) for x in clause}) == 10 for clause in c["clauses"])
        assert task.score(c, task.solution(c)) == 1.0  # planted: the hidden assignment satisfies it
