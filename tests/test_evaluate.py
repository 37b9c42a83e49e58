"""The evaluate stage on the tiny model: model fallback, both env kinds, the result file format."""

import json
import shutil

import pytest

from affine.config import parse_params
from affine.eval.evaluate import evaluate, resolve_model
from affine.eval.metrics import ENV_KEYS


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
