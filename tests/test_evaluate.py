"""The evaluate stage on the tiny model: model fallback, both env kinds, the result file format."""

import json
import shutil

import pytest

from affine.chat import render_prompt
from affine.config import ParamsError, parse_params
from affine.eval.evaluate import evaluate, resolve_model, token_budget
from affine.eval.metrics import ENV_KEYS
from affine.model import load_model


def test_fallback_rl_to_sft_to_base(tmp_path, tiny_model_dir):
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "base")
    assert resolve_model("rl", models) == ("base", models / "base")
    shutil.copytree(tiny_model_dir, models / "sft")
    assert resolve_model("rl", models) == ("sft", models / "sft")
    assert resolve_model("base", models) == ("base", models / "base")
    with pytest.raises(ValueError, match="unknown model"):
        resolve_model("dpo", models)
    with pytest.raises(FileNotFoundError):
        resolve_model("base", tmp_path / "nothing")


def test_evaluate_writes_results_and_samples(tmp_path, tiny_model_dir):
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "base")
    params = parse_params(
        {
            "envs": {"sat": {"n_vars": [3, 4], "k": [2, 3], "clause_ratio": 2.0}},
            "evaluate": {
                "environments": ["affine:sat", "agentgym:textcraft"],
                "samples_per_env": 3,
                "batch_size": 2,
                "max_new_tokens": 6,
                "dtype": "float32",
            },
        }
    )
    out, samples = tmp_path / "metrics" / "rl.json", tmp_path / "data" / "rl.jsonl"
    results = evaluate(params, "rl", models, out, samples)
    assert json.loads(out.read_text()) == results
    assert results["model"] == "rl" and results["evaluated_model"] == "base"
    assert set(results["envs"]) == {"affine:sat", "agentgym:textcraft"}
    for env in results["envs"].values():
        assert set(ENV_KEYS) <= set(env) and env["n"] == 3
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) == 6
    single = [r for r in rows if r["env"] == "affine:sat"]
    assert all(r["task_id"].startswith("sat-eval-") and "reply" in r for r in single)
    episodes = [r for r in rows if r["env"] == "agentgym:textcraft"]
    assert all(r["episode"][0]["role"] == "user" and 1 <= r["turns"] <= 20 for r in episodes)


def test_token_budget_without_a_cap_is_what_the_context_leaves():
    assert token_budget(64, 2048, used=500) == 64  # a cap given: kept
    assert token_budget(None, 2048, used=500) == 1548  # single-turn: the longest prompt's room
    assert token_budget(None, 2048, used=500, turns=3) == 512  # multi-turn: an even share per turn
    with pytest.raises(ParamsError, match="no room"):
        token_budget(None, 512, used=512)
    with pytest.raises(ParamsError, match="context length"):
        token_budget(None, None, used=10)


def test_evaluate_without_a_token_cap_runs_replies_to_the_context(tmp_path, tiny_model_dir):
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "base")
    config = json.loads((models / "base" / "config.json").read_text())
    (models / "base" / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 320}))
    params = parse_params(
        {
            "envs": {"sat": {"n_vars": [3, 3], "k": [2, 2], "clause_ratio": 1.0}},
            "evaluate": {"environments": ["affine:sat"], "samples_per_env": 2, "max_new_tokens": None},
        }
    )
    evaluate(params, "base", models, tmp_path / "base.json", tmp_path / "base.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "base.jsonl").read_text().splitlines()]
    _, tokenizer = load_model(str(models / "base"))
    rendered = [render_prompt(tokenizer, [{"role": "user", "content": r["prompt"]}]) for r in rows]
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in rendered]
    assert max(r["new_tokens"] for r in rows) <= 320 - max(lengths)
    assert any(r["new_tokens"] == 320 - max(lengths) for r in rows)  # the random model never stops early
