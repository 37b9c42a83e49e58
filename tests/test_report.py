"""affine.eval.report: the Markdown report, the PNG chart and the dvc plots data file."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from affine.eval.metrics import build_results
from affine.eval.report import write_report

ENVS = ("affine:sat", "affine:ded", "agentgym:webshop", "agentgym:sciworld")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def res(model, level):
    """A result whose scores grow with ``level`` (0..1) on every env."""
    hits = round(20 * level)
    return build_results(
        model,
        f"models/{model}",
        {
            "affine:sat": [1.0] * hits + [0.0] * (20 - hits),
            "affine:ded": [0.0] * 10,  # all zeros: the interval lies above the mean
            "agentgym:webshop": [level] * 10,
            "agentgym:sciworld": [-100 + 200 * level] * 5,
        },
    )


def outputs(tmp_path, data_name="eval.json"):
    return tmp_path / "metrics" / "report.md", tmp_path / "metrics" / "plots" / "eval.png", tmp_path / data_name


def test_report_three_models_and_baseline(tmp_path):
    md, png, data = outputs(tmp_path)
    results = {"base": res("base", 0.2), "sft": res("sft", 0.5), "rl": res("rl", 0.8)}
    text = write_report(results, md, png, data, baseline=res("sft", 0.4))
    assert md.read_text() == text
    assert "Not evaluated" not in text
    for heading in ("Base Model", "After SFT", "After RL", "Baseline", "SAT Accuracy", "WebShop Score", "**Overall**"):
        assert heading in text
    assert "AgentGym Score" in text and "Pareto frontier: rl" in text
    assert "rl dominates sft" in text and "## Against the baseline" in text
    assert "+0.400" in text  # rl - baseline on SAT: 0.8 - 0.4
    assert "- rl: dominates the baseline (mean rule)" in text
    assert "- base: is dominated by the baseline (mean rule)" in text
    assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 5000
    rows = json.loads(data.read_text())
    assert len(rows) == 4 * len(ENVS)
    assert {r["model"] for r in rows} == {"base", "sft", "rl", "baseline"}
    assert set(rows[0]) == {"model", "env", "label", "mean", "lower", "upper"}
    sat_rl = next(r for r in rows if r["model"] == "rl" and r["env"] == "affine:sat")
    assert sat_rl["mean"] == 0.8 and sat_rl["lower"] < 0.8 < sat_rl["upper"]


@pytest.mark.parametrize("rl_absent_as", ["missing key", "None"])
def test_report_without_rl(tmp_path, rl_absent_as):
    md, png, data = outputs(tmp_path, "eval.tsv")
    results = {"base": res("base", 0.2), "sft": res("sft", 0.5)}
    if rl_absent_as == "None":
        results["rl"] = None
    text = write_report(results, md, png, data, baseline=None)
    assert "Not evaluated (no results): rl." in text
    assert "After RL" not in text and "Against the baseline" not in text
    assert "sft dominates base" in text and "Pareto frontier: sft" in text
    assert png.read_bytes().startswith(PNG_MAGIC)
    rows = list(csv.DictReader(data.open(), delimiter="\t"))
    assert len(rows) == 2 * len(ENVS) and {r["model"] for r in rows} == {"base", "sft"}


def test_report_one_model_and_none(tmp_path):
    md, png, data = outputs(tmp_path)
    text = write_report({"sft": res("sft", 0.5)}, md, png, data, baseline=None)
    assert "Not evaluated (no results): base, rl." in text and "nothing to compare" in text
    text = write_report({}, md, png, data, baseline=None)
    assert "No evaluation results yet." in text
    assert png.read_bytes().startswith(PNG_MAGIC) and json.loads(data.read_text()) == []
    text = write_report({}, md, png, data, baseline=res("main", 0.3))
    assert "No model results to compare with the baseline." in text


def test_dvc_plots_reads_data_file(tmp_path):
    dvc = Path(sys.executable).with_name("dvc")
    dvc = str(dvc) if dvc.exists() else shutil.which("dvc")
    if dvc is None or shutil.which("git") is None:
        pytest.skip("dvc or git not installed")
    md, png, data = outputs(tmp_path)
    write_report({"base": res("base", 0.2), "sft": res("sft", 0.5)}, md, png, data, baseline=None)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    (tmp_path / "dvc.yaml").write_text(
        f"plots:\n  - {data.name}:\n      template: bar_horizontal\n      x: mean\n      y: label\n"
    )
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True)
    out = subprocess.run(
        [dvc, "plots", "show", "--json"], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    ).stdout
    plot = json.loads(out)["data"][data.name][0]
    assert plot["type"] == "vega"
    values = plot["content"]["data"]["values"]
    assert len(values) == 2 * len(ENVS) and {"mean", "label", "lower", "upper"} <= set(values[0])
