"""`affine sample/score/play` read ./params.yaml by default, so a challenge looks like the pipeline's own."""

from __future__ import annotations

import json

import pytest
import yaml

from affine.cli import main


def _sat_sizes(capsys: pytest.CaptureFixture[str], *extra: str) -> set[int]:
    assert main(["sample", "affine:sat", "--seed", "0", "--n", "4", *extra]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {len(row["solution"]) for row in rows}


def test_params_yaml_in_the_working_dir_is_read_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    defaults = _sat_sizes(capsys)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"envs": {"sat": {"n_vars": [3, 3], "k": [2, 2]}}}))
    assert _sat_sizes(capsys) == {3}
    assert _sat_sizes(capsys, "--params", "none") == defaults
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"envs": {"sat": {"n_vars": [6, 6], "k": [2, 2]}}}))
    assert _sat_sizes(capsys, "--params", str(other)) == {6}
    assert defaults != {3} and defaults != {6}, "the defaults differ from both files, or the test proves nothing"


def test_only_the_envs_section_must_be_valid(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"rl": {"clip_range": -1.0}}))
    assert main(["sample", "affine:sat", "--n", "1"]) == 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"envs": {"sat": {"n_vars": "many"}}}))
    assert main(["sample", "affine:sat", "--n", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: invalid params: envs.sat.n_vars")
