"""params.yaml validation: defaults, the shipped files, and one clear line per bad value."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import HANG_GUARD_S

from affine.config import ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_recipe_values():
    p = parse_params({})
    assert (p.sft.lora_r, p.sft.lora_alpha, p.sft.lora_dropout) == (64, 128, 0.05)
    assert (p.sft.learning_rate, p.sft.min_lr_ratio, p.sft.scheduler_type) == (2.0e-5, 0.1, "cosine")
    assert (p.rl.clip_range, p.rl.gae_lambda, p.rl.gamma, p.rl.vf_coef, p.rl.entropy_coef) == (
        0.2,
        0.95,
        0.99,
        0.5,
        0.01,
    )
    assert p.collect.affine.num_samples == 10000 and p.collect.agentgym.num_episodes == 5000


@pytest.mark.parametrize("path", ["params.yaml", "configs/recipe-4b.yaml"])
def test_shipped_params_files_validate(path):
    load_params(ROOT / path)


def test_recipe_file_holds_the_full_scale_values():
    p = load_params(ROOT / "configs/recipe-4b.yaml")
    assert p.sft.num_epochs == 3 and p.sft.bf16 and p.sft.gradient_checkpointing
    assert p.collect.affine.num_samples == 10000 and p.rl.num_rollouts == 100
    assert p.envs.sat.n_vars == [10, 20] and p.envs.sat.k == [3, 5]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"sft": {"lora_r": -1}}, "sft.lora_r: Input should be greater than or equal to 1"),
        ({"rl": {"clip_range": 2}}, "rl.clip_range: Input should be less than 1"),
        ({"sft": {"learning_rate": "2e-5"}}, "write 2.0e-5"),
        ({"sft": {"lr": 0.1}}, "sft.lr: unknown key"),
        ({"bogus": {}}, "bogus: unknown key"),
        ({"sft": {"batch_size": 2.5}}, "sft.batch_size"),
        ({"sft": {"use_lora": "yes"}}, "sft.use_lora"),
        ({"evaluate": {"environments": ["affine:chess"]}}, "evaluate.environments.0"),
        ({"envs": {"sat": {"n_vars": [5, 3]}}}, "n_vars must be [low, high]"),
        ({"base": {"load_in_8bit": True, "load_in_4bit": True}}, "exclusive"),
        ({"sft": {"bf16": True, "fp16": True}}, "exclusive"),
        ({"base": {"dtype": "float8"}}, "base.dtype"),
    ],
)
def test_bad_values_name_the_key(raw, expected):
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="mapping"):
        parse_params(["a"])  # type: ignore[arg-type]
    bad = tmp_path / "params.yaml"
    bad.write_text("sft: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_a_stage_stops_at_start_with_one_line(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sft"]["lora_r"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run(
        [sys.executable, str(ROOT / "stages/sft.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("error: invalid params: sft.lora_r")
    assert "Traceback" not in run.stderr
