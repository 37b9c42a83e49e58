"""The real pipeline, end to end, on the embedded SmolLM2-135M with tiny params (slow: a few minutes on 2 cores).

Also checks the DVC contract: a second `dvc repro` is a no-op, and `dvc metrics show` reads what the stages wrote.
Sized for a loaded 2-core machine: episodes capped at 3 turns, a handful of samples, 16 new tokens. Nothing here
is bound by wall-clock speed; conftest.HANG_GUARD_S only ends a run that hangs, with its whole process group (a
stage under `dvc repro` included).
"""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_guarded

ROOT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]

TINY = {
    "envs": {"agentgym": {"textcraft": {"max_turns": 3}}},
    "collect": {"affine": {"num_samples": 12}, "agentgym": {"num_episodes": 2, "environments": ["agentgym:textcraft"]}},
    "sft": {
        "max_steps": 2,
        "batch_size": 2,  # batch 4 x the profile's 4 accumulation was 16 rows a step (13 train rows): 3 of 11 min
        "gradient_accumulation_steps": 1,
        "eval_steps": 1,
        "save_steps": 2,
        "lora_r": 4,
        "lora_alpha": 8,
    },
    "rl": {
        "environments": ["affine:sat", "agentgym:textcraft"],
        "num_rollouts": 1,
        "rollout_batch_size": 2,
        "ppo_epochs": 1,
        "minibatch_size": 2,
        "max_new_tokens": 16,
        "max_episode_length": 3,
        "horizon_schedule": [{"iteration": 0, "max_turns": 3}],
    },
    "evaluate": {
        "environments": ["affine:sat", "affine:abd", "affine:ded", "agentgym:textcraft"],
        "samples_per_env": 2,
        "max_new_tokens": 16,
        "vllm_kv_cache_gib": 1.0,  # 2 short episodes: the profile's 8 GiB (64 long ones) would only cost memory
    },
}


def merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def sh(cmd, cwd):
    run = run_guarded(cmd, cwd=cwd)
    assert run.returncode == 0, f"{cmd}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout


@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path):
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    shutil.copytree(ROOT / "affine", tmp_path / "affine", ignore=shutil.ignore_patterns("__pycache__"))
    params = merge(yaml.safe_load((tmp_path / "params.yaml").read_text()), TINY)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], tmp_path)
    sh(DVC + ["init", "-q"], tmp_path)
    sh(DVC + ["config", "core.analytics", "false"], tmp_path)
    sh(["git", "add", "-A"], tmp_path)  # dvclive needs a repository with a commit, as any clone of this one has
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], tmp_path)
    env_python = Path(sys.executable).parent
    log = sh(["bash", "-c", f"PATH={env_python}:$PATH {sys.executable} -m dvc repro 2>&1"], tmp_path)
    (tmp_path / "repro.log").write_text(log)  # per-stage times: bench/bench_pipeline.py --log <this file>
    assert log.count("Running stage") == 9  # prepare, collect, sft, rl, evaluate x3, report, export
    # every stage script logs its thread choice, and so does export (`affine export`, the CLI)
    assert log.count("> python stages/") == 8
    assert log.count("torch threads: ") == 9, "every stage logs its thread choice"
    assert "checkpointing` is deprecated" not in log, "stage logs use transformers' current checkpointing names"

    for model in ("base", "sft", "rl"):
        result = json.loads((tmp_path / "metrics/eval" / f"{model}.json").read_text())
        assert result["evaluated_model"] == model
        assert set(result["envs"]) == set(TINY["evaluate"]["environments"])
        assert all(env["n"] == 2 for env in result["envs"].values())
    summary = json.loads((tmp_path / "metrics/sft/summary.json").read_text())
    assert summary["steps"] == 2 and summary["base_eval_loss"] > 0
    assert (tmp_path / "models/rl/adapter_config.json").is_file()
    assert (tmp_path / "metrics/rl/metrics.json").is_file()
    report = (tmp_path / "metrics/report.md").read_text()
    assert "Pareto" in report and "After RL" in report
    assert (tmp_path / "metrics/plots/eval.png").stat().st_size > 1000

    # how fast a no-op is depends on the machine's load (bench/bench_pipeline.py --noop measures it); that it is one
    # does not
    again = sh(["bash", "-c", f"PATH={env_python}:$PATH {sys.executable} -m dvc repro"], tmp_path)
    assert "Data and pipelines are up to date" in again
    shown = json.loads(sh(DVC + ["metrics", "show", "--json"], tmp_path))
    assert shown, "dvc metrics show reads the declared metrics"
