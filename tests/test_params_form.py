"""params.yaml stays in the form ``dvc exp run -S`` writes back, so an experiment's params diff is one line.

The round trip goes through DVC's own writer (``dvc.utils.hydra.apply_overrides``, what ``-S`` calls), never a copy.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from affine.tools.normalize_params import dvc_form, main, normalize

pytest.importorskip("dvc.utils.hydra", reason="dvc with hydra support is not installed")

FLOW = """\
# a comment survives
base:
  seed: 42            # and so does this one
  lr: 5.0e-4
  envs: [affine:sat, affine:abd]
  clip: null
"""


def _changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_flow_lists_and_null_are_written_as_dvc_writes_them():
    text = dvc_form(FLOW)
    assert "envs:\n  - affine:sat\n  - affine:abd\n" in text
    assert "clip:\n" in text and "null" not in text
    assert "# a comment survives" in text and "# and so does this one" in text
    assert dvc_form(text) == text, "the DVC form is a fixed point"


def test_one_value_experiment_is_a_one_line_diff(tmp_path: Path):
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text(FLOW)
    assert normalize(path) is False  # rewritten
    normalized = path.read_text()
    apply_overrides(path, ["base.seed=7"])
    assert _changed_lines(normalized, path.read_text()) == [
        "-  seed: 42            # and so does this one",
        "+  seed: 7             # and so does this one",
    ]


def test_check_mode_reports_without_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "params.yaml"
    path.write_text(FLOW)
    assert main([str(path), "--check"]) == 1
    assert path.read_text() == FLOW
    assert "not in the form" in capsys.readouterr().out
    assert main([str(path)]) == 0
    assert main([str(path), "--check"]) == 0


def test_without_arguments_it_rewrites_params_yaml_in_the_working_dir(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(FLOW)
    assert main([]) == 0
    assert (tmp_path / "params.yaml").read_text() == dvc_form(FLOW) != FLOW


@pytest.mark.parametrize("content", [None, "a: [1\n"])
def test_bad_input_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None):
    path = tmp_path / "params.yaml"
    if content is not None:
        path.write_text(content)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and str(path) in err
    if content is not None:
        assert path.read_text() == content, "a file DVC cannot read is left untouched"


def test_params_yaml_is_byte_identical_after_dvcs_round_trip():
    """If this fails, run `python -m affine.tools.normalize_params` (e.g. after merging branches that add params)."""
    path = Path(__file__).resolve().parents[1] / "params.yaml"
    text = path.read_text(encoding="utf-8")
    assert dvc_form(text) == text, "params.yaml is not in the form `dvc exp run -S` writes back"
