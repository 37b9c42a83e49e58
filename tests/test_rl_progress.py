"""The `rl` stage reports progress while it runs and leaves no crash-resume checkpoints behind once it succeeds."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from affine.config import parse_params
from affine.rl.loop import RLProgress

ROOT = Path(__file__).resolve().parents[1]


def test_progress_counts_episodes_from_the_resume_point_and_logs_phases(caplog):
    with caplog.at_level(logging.INFO, logger="affine.rl.loop"):
        progress = RLProgress(4, 1, 6, ["affine:sat", "affine:abd"], enabled=True)
        assert (progress.bar.n, progress.bar.total) == (6, 24)
        progress.phase(1, "playing 6 episodes")
        progress.played(6)
        progress.finished(2, {"return_mean": 0.5, "success_rate": 0.25, "tokens_per_s": 12.0})
        progress.close()
    assert progress.bar.n == 12
    text = caplog.text
    assert "4 iterations x 6 episodes over affine:sat, affine:abd, resuming after iteration 1" in text
    assert "iteration 2/4: playing 6 episodes" in text
    assert "iteration 2/4 done: return 0.500 success 0.250 (12.0 generated tokens/s)" in text


def test_progress_is_silent_off_the_main_process(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="affine.rl.loop"):
        progress = RLProgress(2, 0, 3, ["affine:sat"], enabled=None)
        progress.phase(0, "playing")
        progress.played(3)
        progress.finished(1, {"return_mean": 0.0, "success_rate": 0.0})
        progress.close()
    assert caplog.text == "" and capsys.readouterr().err == ""


def _rl_stage(monkeypatch, tmp_path, train):
    spec = importlib.util.spec_from_file_location("rl_stage", ROOT / "stages/rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("{}\n")
    (tmp_path / "models/sft").mkdir(parents=True)
    (tmp_path / "models/sft/adapter_config.json").write_text("{}")
    monkeypatch.setattr(module, "train_rl", train)
    return module


def _train_leaving_checkpoints(*args, checkpoint_dir, **kwargs):
    (Path(checkpoint_dir) / "iter-000001").mkdir(parents=True)
    (Path(checkpoint_dir) / "iter-000001/state.json").write_text("{}")


def test_checkpoints_are_removed_after_a_successful_run(monkeypatch, tmp_path):
    _rl_stage(monkeypatch, tmp_path, _train_leaving_checkpoints).main(parse_params({}))
    assert not (tmp_path / "checkpoints/rl").exists()


def test_checkpoints_survive_a_failed_run_for_the_resume(monkeypatch, tmp_path):
    def killed(*args, **kwargs):
        _train_leaving_checkpoints(*args, **kwargs)
        raise RuntimeError("killed mid-run")

    with pytest.raises(RuntimeError):
        _rl_stage(monkeypatch, tmp_path, killed).main(parse_params({}))
    assert (tmp_path / "checkpoints/rl/iter-000001/state.json").is_file()
