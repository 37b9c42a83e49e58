"""Crash-resume checkpoints that can never be resumed into the wrong run.

A training stage keeps its checkpoints outside DVC's outputs (``checkpoints/<stage>``) so a killed ``dvc repro`` can
continue where it stopped.  The danger is the opposite case: params or inputs changed since the kill, and the stage
would silently continue an old run.  Each checkpoint folder therefore carries a fingerprint of what produced it
(params sections, content hashes of the inputs, and of the library's code); a mismatch discards the folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
FINGERPRINT = "fingerprint.json"


def content_hash(path: str | Path, pattern: str = "*") -> str:
    """sha256 over a file, or over the files of a folder matching ``pattern`` (relative names included), sorted."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob(pattern) if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def source_hash() -> str:
    """sha256 of the ``affine`` library's Python sources (bytecode caches excluded).

    Why in every fingerprint: DVC reruns a stage when its code changes, and without this the rerun found the last
    run's checkpoints under the same params and inputs and "resumed" them -- the RL stage then reloaded its final
    iteration and trained nothing, so its metrics kept coming from the old code (a fresh clone got SAT 0.281 / ABD
    0.297 where main had 0.359 / 0.266).
    """
    return content_hash(Path(__file__).resolve().parent, "*.py")


def claim(checkpoint_dir: str | Path, expected: dict[str, Any]) -> bool:
    """Make ``checkpoint_dir`` belong to ``expected``; returns whether earlier checkpoints of the same run survive."""
    checkpoint_dir = Path(checkpoint_dir)
    marker = checkpoint_dir / FINGERPRINT
    kept = checkpoint_dir.exists() and marker.is_file() and json.loads(marker.read_text()) == expected
    if checkpoint_dir.exists() and not kept:
        log.info("discarding checkpoints in %s: they come from other params or inputs", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(expected, indent=2, sort_keys=True))
    return kept
