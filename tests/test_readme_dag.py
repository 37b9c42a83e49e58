"""README's pipeline drawing is exactly what `dvc dag` prints for this dvc.yaml (it once showed an edge DVC lacks)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def test_readme_drawing_equals_dvc_dag(tmp_path):
    drawing = re.search(r"<!-- dvc dag -->\n```\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S)
    assert drawing, "README.md has a `<!-- dvc dag -->` code block"
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")  # a bare copy: dvc dag reads only dvc.yaml
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=HANG_GUARD_S)
    run = subprocess.run(
        [sys.executable, "-m", "dvc", "dag"], cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert run.returncode == 0, run.stderr
    assert _lines(drawing.group(1)) == _lines(run.stdout)
