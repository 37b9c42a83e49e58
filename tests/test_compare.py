"""affine.eval.compare: loading (disk and git revisions), the table, the verdict, and `dvc metrics diff`."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from affine.eval.compare import compare, format_table, load_results, load_results_at_rev, main_compare
from affine.eval.metrics import build_results

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "DVC_NO_ANALYTICS": "1",
}
RESULT = "metrics/eval/sft.json"


def res(model, sat_hits, n=20, webshop=None):
    per_env = {"affine:sat": [1.0] * sat_hits + [0.0] * (n - sat_hits)}
    if webshop is not None:
        per_env["agentgym:webshop"] = [webshop] * n
    return build_results(model, f"models/{model}", per_env)


def write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
    return path


def run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True)


def two_commit_repo(path: Path, dvc: str | None = None) -> Path:
    """A git repo with two commits of metrics/eval/sft.json: 5/20 on SAT, then 15/20 (plus DVC set up when given)."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    run(["git", "init", "-q"], path)
    if dvc:
        run([dvc, "init", "-q"], path)
        (path / "dvc.yaml").write_text(f"metrics:\n  - {RESULT}\n")
    write(path / RESULT, res("sft", 5))
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "first eval"], path)
    write(path / RESULT, res("sft", 15))
    run(["git", "commit", "-qam", "second eval"], path)
    return path


@pytest.fixture
def repo(tmp_path):
    return two_commit_repo(tmp_path)


def test_load_results_names_and_errors(tmp_path):
    a = write(tmp_path / "a" / "sft.json", res("sft", 5))
    b = write(tmp_path / "b" / "sft.json", res("sft", 6))
    c = write(tmp_path / "rl.json", {k: v for k, v in res("", 7).items() if k != "model"})
    loaded = load_results([a, b, c])
    assert list(loaded) == ["sft", f"sft ({b})", "rl"]  # duplicates kept, missing model -> stem
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_results([tmp_path / "nope.json"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_results([tmp_path / "bad.json"])
    write(tmp_path / "other.json", {"loss": 1.0})
    with pytest.raises(ValueError, match="not a results file"):
        load_results([tmp_path / "other.json"])


def test_format_table():
    results = {"base": res("base", 4), "sft": res("sft", 10, webshop=0.5)}
    table = format_table(results)
    lines = table.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["model", "sat", "webshop", "weighted_mean", "weighted_acc", "success_rate"]
    assert len({len(line) for line in lines}) == 1  # aligned
    assert "0.500 [" in lines[3] and "—" in lines[2]  # base has no webshop
    assert format_table({}) == "(no results)"


def test_compare_verdict_both_rules():
    results = {"base": res("base", 4), "sft": res("sft", 5), "rl": res("rl", 16)}
    text = compare(results, "mean")
    assert "sft dominates base" in text and "rl dominates sft" in text
    assert "Pareto frontier: rl" in text
    text = compare(results, "interval")
    assert "sft dominates base" not in text  # 4/20 vs 5/20: intervals overlap
    assert "rl dominates base" in text and "Pareto frontier: rl" in text
    assert "no model dominates another" in compare({"a": res("a", 3), "b": res("b", 3)})
    with pytest.raises(ValueError, match="rule"):
        compare(results, "best")


def test_load_results_at_rev(repo):
    old = load_results_at_rev("HEAD~1", [RESULT], repo_dir=repo)
    assert list(old) == ["sft@HEAD~1"]
    assert old["sft@HEAD~1"]["envs"]["affine:sat"]["mean"] == 0.25
    absolute = load_results_at_rev("HEAD", [repo / RESULT], repo_dir=repo)
    assert absolute["sft@HEAD"]["envs"]["affine:sat"]["mean"] == 0.75
    with pytest.raises(FileNotFoundError, match="metrics/eval/rl.json"):
        load_results_at_rev("HEAD~1", ["metrics/eval/rl.json"], repo_dir=repo)
    with pytest.raises(FileNotFoundError, match="no-such-rev"):
        load_results_at_rev("no-such-rev", [RESULT], repo_dir=repo)


def test_main_compare_rev(repo, monkeypatch):
    monkeypatch.chdir(repo)
    text = main_compare([RESULT], rev="HEAD~1", rule="mean")
    assert "sft dominates sft@HEAD~1" in text
    assert "Pareto frontier: sft\n" in text + "\n"
    assert "0.750 [" in text and "0.250 [" in text
    assert "sft dominates sft@HEAD~1" in main_compare([RESULT], rev="HEAD~1", rule="interval")
    assert "sft@" not in main_compare([RESULT], rev=None, rule="mean")
    # ordered rules: the revision's result is the earlier model by default (0.25 -> 0.75 clears the 0.35 threshold)
    text = main_compare([RESULT], rev="HEAD~1", rule="threshold")
    assert "earliest first: sft@HEAD~1, sft" in text and "sft dominates sft@HEAD~1" in text and "(later model)" in text
    assert "Champion: sft\n" in main_compare([RESULT], rev="HEAD~1", rule="challenger") + "\n"


def test_dvc_metrics_diff_on_result_files(tmp_path):
    dvc = Path(sys.executable).with_name("dvc")
    dvc = str(dvc) if dvc.exists() else shutil.which("dvc")
    if dvc is None:
        pytest.skip("dvc not installed")
    repo = two_commit_repo(tmp_path, dvc=dvc)
    out = run([dvc, "metrics", "diff", "HEAD~1", "--json"], repo).stdout
    diff = json.loads(out)[RESULT]
    assert diff["envs.affine:sat.mean"]["old"] == 0.25
    assert diff["envs.affine:sat.mean"]["new"] == 0.75
    assert diff["envs.affine:sat.accuracy"]["diff"] == pytest.approx(0.5)
    assert diff["aggregate.weighted_mean"]["diff"] == pytest.approx(0.5)
