"""A bad param stops the stage that reads it, not whichever stage `dvc repro` happens to run first."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import HANG_GUARD_S

from affine.config import ParamsError
from affine.stage import stage_params

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_a_bad_rl_param_is_a_warning_for_sft_and_an_error_for_rl(tmp_path, caplog):
    path = _write(tmp_path, {"sft": {"learning_rate": 1.0e-3}, "rl": {"clip_range": -1.0}})
    with caplog.at_level(logging.WARNING):
        params = stage_params("base", "sft", path=path)
    assert params.sft.learning_rate == 1.0e-3, "the sections the stage reads are the file's"
    assert params.rl.clip_range == 0.2, "the bad section falls back to its defaults"
    assert "rl.clip_range" in caplog.text and "does not read `rl`" in caplog.text
    with pytest.raises(ParamsError, match=r"^invalid params: rl\.clip_range"):
        stage_params("base", "envs", "rl", "sft", path=path)


def test_unknown_section_or_bad_file_stops_every_stage(tmp_path):
    path = _write(tmp_path, {"evalute": {"samples_per_env": 3}})
    with pytest.raises(ParamsError, match="evalute"):
        stage_params("base", path=path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        stage_params("base", path=path)
    with pytest.raises(ParamsError, match="not found"):
        stage_params("base", path=tmp_path / "missing.yaml")


def test_good_params_load_unchanged(tmp_path):
    path = _write(tmp_path, {"rl": {"clip_range": 0.1}})
    assert stage_params("evaluate", path=path).rl.clip_range == 0.1


def test_report_stage_names_the_bad_section_in_one_line(tmp_path):
    """The real `report` stage script (it starts in a second): one `error:` line naming `evaluate`, exit 2."""
    _write(tmp_path, {"evaluate": {"samples_per_env": 0}, "rl": {"clip_range": -1.0}})
    run = subprocess.run(
        [sys.executable, str(ROOT / "stages/report.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "invalid params: evaluate.samples_per_env" in errors[0]
    assert "rl.clip_range" not in errors[0] and "rl.clip_range" in run.stderr, "rl's problem is a warning here"
    assert "Traceback" not in run.stderr
