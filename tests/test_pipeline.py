"""The DVC graph: which stages a param change invalidates, and that an unchanged repo is a no-op.

Runs on a git+dvc copy of the repository with every stage's outputs recorded by `dvc commit` (placeholder files: this
test is about the dependency graph declared in dvc.yaml, not about what the stages compute — the slow end-to-end
test runs them for real).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]


def sh(cmd, cwd, check=True):
    run = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=HANG_GUARD_S)
    if check and run.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{run.stdout}\n{run.stderr}")
    return run


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repo")
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, tmp / name)
    shutil.copytree(ROOT / "stages", tmp / "stages")
    shutil.copytree(ROOT / "affine", tmp / "affine", ignore=shutil.ignore_patterns("__pycache__"))
    sh(["git", "init", "-q"], tmp)
    sh(DVC + ["init", "-q"], tmp)
    sh(DVC + ["config", "core.analytics", "false"], tmp)
    pipeline = yaml.safe_load((tmp / "dvc.yaml").read_text())
    for path in _outs(pipeline):
        target = tmp / path
        if path.startswith("models/"):
            target.mkdir(parents=True, exist_ok=True)
            (target / "config.json").write_text("{}")
        elif Path(path).suffix:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("{}\n")
        else:
            target.mkdir(parents=True, exist_ok=True)
            (target / "placeholder.json").write_text("{}")
    sh(DVC + ["commit", "-f", "-q"], tmp)
    sh(["git", "add", "-A"], tmp)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], tmp)
    return tmp


def _outs(pipeline):
    found = []
    for stage in pipeline["stages"].values():
        items = stage["foreach"] if "foreach" in stage else [None]
        body = stage.get("do", stage)
        for item in items:
            for out in body.get("outs", []) + body.get("metrics", []):
                path = next(iter(out)) if isinstance(out, dict) else out
                found.append(path.replace("${item}", str(item)))
    return found


def changed_stages(repo):
    import json

    status = json.loads(sh(DVC + ["status", "--json"], repo).stdout or "{}")
    return {name.split(":")[-1] for name in status}


def downstream(repo, stage):
    """``stage`` and every stage that depends on it, transitively (what `dvc repro` reruns after it changes)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        graph = dvc_repo.index.graph
        node = next(s for s in graph.nodes if s.addressing.split(":")[-1] == stage)
        return {s.addressing.split(":")[-1] for s in nx.ancestors(graph, node)} | {stage}


def with_param(repo, key, value):
    path = repo / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    section, _, leaf = key.rpartition(".")
    target = params
    for part in section.split("."):
        target = target[part]
    target[leaf] = value
    path.write_text(yaml.safe_dump(params))
    return original


def test_unchanged_repo_is_up_to_date(repo):
    assert changed_stages(repo) == set()


def test_python_bytecode_in_a_dependency_reruns_nothing(repo):
    """An import (a test run) writes __pycache__ into affine/envs, affine/rl ...: .dvcignore must keep it out of
    their hashes, or every stage after it reruns with unchanged code (it did: collect and sft reran)."""
    cache = repo / "affine" / "envs" / "__pycache__"
    cache.mkdir()
    (cache / "sat.cpython-311.pyc").write_bytes(b"bytecode")
    (repo / "affine" / "rl" / "stray.pyc").write_bytes(b"bytecode")
    try:
        assert changed_stages(repo) == set()
    finally:
        shutil.rmtree(cache)
        (repo / "affine" / "rl" / "stray.pyc").unlink()


@pytest.mark.parametrize(
    ("key", "value", "directly", "reruns"),
    [
        (
            "sft.learning_rate",
            5.0e-5,
            {"sft"},
            {"sft", "rl", "evaluate@sft", "evaluate@rl", "report", "export"},
        ),
        ("evaluate.samples_per_env", 7, {"evaluate@base", "evaluate@sft", "evaluate@rl"}, None),
        ("evaluate.baseline", "x.json", {"report"}, {"report"}),
        ("base.model", "some/model", {"prepare"}, None),
        ("rl.clip_range", 0.1, {"rl"}, {"rl", "evaluate@rl", "report", "export"}),
    ],
)
def test_a_param_change_reruns_exactly_its_dependents(repo, key, value, directly, reruns):
    stages = set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    if "rl" not in stages:
        directly = {s for s in directly if "rl" not in s}
        reruns = reruns and {s for s in reruns if "rl" not in s}
        if not directly:
            pytest.skip("no rl stage in this pipeline yet")
    original = with_param(repo, key, value)
    try:
        assert changed_stages(repo) == directly
        if reruns is not None:
            (only,) = directly
            assert downstream(repo, only) == reruns
    finally:
        (repo / "params.yaml").write_text(original)
    assert changed_stages(repo) == set()
