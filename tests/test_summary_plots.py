"""The declared DVC metrics are the key scores only, and `dvc plots show` renders offline (static PNGs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import HANG_GUARD_S

from affine.eval.curves import RL_PANELS, SFT_PANELS, plot_curves, read_series
from affine.eval.summary import key_metrics, write_summaries

ROOT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]


def _result(mean: float) -> dict:
    env = {"n": 4, "accuracy": mean, "mean": mean, "std": 0.5, "median": 0.0, "success_rate": mean}
    return {
        "model": "m",
        "envs": {"affine:sat": {**env, "ci80_lower": 0.123456, "ci80_upper": 0.9}},
        "aggregate": {"weighted_mean": mean, "weighted_accuracy": mean, "overall_success_rate": mean},
    }


def test_key_metrics_are_scores_and_intervals_only():
    got = key_metrics(_result(0.25), eval_loss=1.234567)
    assert got == {"sat": {"mean": 0.25, "lo": 0.1235, "hi": 0.9}, "overall": 0.25, "eval_loss": 1.2346}
    assert key_metrics(None) == {}, "a model not evaluated is an empty row, not a failed stage"


def test_write_summaries_takes_each_models_eval_loss(tmp_path):
    sft_summary = {"eval_loss": 0.5, "base_eval_loss": 1.5, "wall_s": 99.0}
    written = write_summaries({"base": _result(0.0), "sft": _result(0.5), "rl": None}, sft_summary, tmp_path)
    assert written["base"]["eval_loss"] == 1.5 and written["sft"]["eval_loss"] == 0.5
    assert json.loads((tmp_path / "rl.json").read_text()) == {}
    assert "wall_s" not in (tmp_path / "sft.json").read_text()


def test_read_series_skips_bad_rows_and_missing_files(tmp_path):
    tsv = tmp_path / "loss.tsv"
    tsv.write_text("step\tloss\n1\t0.5\n2\tnan-ish\nx\t1\n3\t0.25\n")
    assert read_series(tsv) == ([1.0, 3.0], [0.5, 0.25])
    assert read_series(tmp_path / "absent.tsv") == ([], [])


def test_curves_draw_what_exists_and_label_what_does_not(tmp_path):
    series = tmp_path / "plots/metrics"
    (series / "score").mkdir(parents=True)
    (series / "return_mean.tsv").write_text("step\treturn_mean\n0\t0.1\n1\t0.3\n")
    (series / "score/affine_sat.tsv").write_text("step\taffine_sat\n0\t0\n1\t1\n")
    assert plot_curves(series, RL_PANELS, tmp_path / "rl.png", "RL") == 2
    assert plot_curves(tmp_path / "nothing", SFT_PANELS, tmp_path / "sft.png", "SFT") == 0
    for png in ("rl.png", "sft.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    """A git+dvc repo with this dvc.yaml and small real outputs for its declared metrics and plots."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tmp = tmp_path_factory.mktemp("dvcrepo")
    shutil.copy(ROOT / "dvc.yaml", tmp / "dvc.yaml")
    pipeline = yaml.safe_load((tmp / "dvc.yaml").read_text())
    write_summaries({"base": _result(0.0), "sft": _result(0.5), "rl": _result(0.75)}, {"eval_loss": 0.5}, tmp / "s")
    for metric in pipeline["metrics"]:
        (tmp / metric).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp / "s" / Path(metric).name, tmp / metric)
    for plot in pipeline["plots"]:
        plot_curves(tmp / "none", SFT_PANELS, tmp / plot, plot)
    for cmd in (["git", "init", "-q"], DVC + ["init", "-q"], DVC + ["config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=tmp, check=True, capture_output=True, timeout=HANG_GUARD_S)
    return tmp, pipeline


def test_declared_plots_are_static_images_that_render_offline(dvc_repo):
    tmp, pipeline = dvc_repo
    assert all(isinstance(p, str) and p.endswith(".png") for p in pipeline["plots"])
    run = subprocess.run(
        DVC + ["plots", "show", "-o", "out"], cwd=tmp, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert run.returncode == 0, run.stderr
    html = (tmp / "out/index.html").read_text()
    assert html.count("<img") == len(pipeline["plots"])
    assert "<script" not in html and "http" not in html.split("<body>")[1], "nothing is fetched from the network"


def test_declared_metrics_are_one_narrow_row_per_model(dvc_repo):
    tmp, pipeline = dvc_repo
    run = subprocess.run(
        DVC + ["metrics", "show", "--json"], cwd=tmp, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)
    files = next(iter(shown.values()))["data"]
    assert set(files) == set(pipeline["metrics"])
    for data in files.values():
        keys = set(data["data"])
        assert keys <= {
            "sat",
            "abd",
            "ded",
            "webshop",
            "alfworld",
            "babyai",
            "sciworld",
            "textcraft",
            "overall",
            "eval_loss",
        }
