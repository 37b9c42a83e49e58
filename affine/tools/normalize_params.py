"""Rewrite a params file into the exact form ``dvc exp run -S`` writes back.

``dvc exp run -S key=value`` loads ``params.yaml`` with ruamel (round-trip), applies the override through Hydra and
merges plain Python values back, so every list comes out in block style and every ``null`` as an empty value.  A file
kept in that form turns a one-value experiment into a one-line diff.  Rather than imitate that writer, this calls
the very function DVC uses (``dvc.utils.hydra.apply_overrides``) with no override; it is idempotent.

Usage: ``python -m affine.tools.normalize_params [params.yaml ...] [--check]``.  ``--check`` changes nothing and exits
1 when a file is not in that form (for CI and for the integrator after merging branches that add params).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path


def dvc_form(text: str) -> str:
    """``text`` as DVC writes it back after an experiment's ``-S`` override (computed on a temporary copy)."""
    from dvc.utils.hydra import apply_overrides

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "params.yaml"
        copy.write_text(text, encoding="utf-8")
        apply_overrides(copy, [])
        return copy.read_text(encoding="utf-8")


def normalize(path: Path, check: bool = False) -> bool:
    """True when ``path`` already is in DVC's form; otherwise rewrite it (unless ``check``) and return False."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such params file")
    original = path.read_text(encoding="utf-8")
    try:
        rewritten = dvc_form(original)
    except Exception as exc:  # ruamel/Hydra errors have many types; all mean "not a YAML mapping DVC can edit"
        raise ValueError(f"{path}: not a YAML mapping DVC can edit ({type(exc).__name__})") from None
    if rewritten == original:
        return True
    if not check:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(rewritten, encoding="utf-8")
        shutil.move(tmp, path)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m affine.tools.normalize_params", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="params files (default: ./params.yaml)")
    parser.add_argument("--check", action="store_true", help="report files not in DVC's form; change nothing")
    args = parser.parse_args(argv)
    status = 0
    for path in args.paths or [Path("params.yaml")]:
        try:
            same = normalize(path, check=args.check)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if not same:
            print(f"{path}: {'not in the form dvc exp run -S writes' if args.check else 'rewritten'}")
            status = 1 if args.check else status
    return status


if __name__ == "__main__":
    sys.exit(main())
