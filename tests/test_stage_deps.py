"""Every stage's ``dvc.yaml`` deps cover the repository code its script imports, so editing that code reruns it.

The import graph is read statically (``ast``) from each stage's entry point, following ``affine.*`` imports at any
depth, including imports inside functions (a superset of what one run executes: a stage that may import a module
depends on it).  Code loaded by name in another process (``affine/vllm_worker.py``, which vLLM's worker imports)
is listed by hand.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def imported_names(path: Path) -> set[str]:
    package = list(path.relative_to(ROOT).with_suffix("").parts)
    package = package if path.name == "__init__.py" else package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


def import_closure(entry: Path) -> set[str]:
    """Repository files ``entry`` imports, transitively, parent packages' ``__init__`` included."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path):
            if name.split(".")[0] != "affine":
                continue
            parts = name.split(".")
            todo += [f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i]))) is not None]
    return {path.relative_to(ROOT).as_posix() for path in seen}


def stages() -> list[tuple[str, Path, list[str]]]:
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    found = []
    for name, stage in pipeline["stages"].items():
        body = stage.get("do", stage)
        argv = body["cmd"].split()
        entry = ROOT / argv[1] if argv[1].endswith(".py") else module_file(argv[argv.index("-m") + 1])
        assert entry is not None and entry.is_file(), f"{name}: entry point of {body['cmd']!r} not found"
        found.append((name, entry, [dep.rstrip("/") for dep in body["deps"]]))
    return found


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep + "/") for dep in deps)


@pytest.mark.parametrize(("name", "entry", "deps"), stages(), ids=[s[0] for s in stages()])
def test_deps_cover_every_imported_module(name: str, entry: Path, deps: list[str]) -> None:
    missing = sorted(path for path in import_closure(entry) if not covered(path, deps))
    assert not missing, f"stage {name} imports code missing from its dvc.yaml deps: {missing}"


def test_the_walk_follows_relative_lazy_and_package_imports(tmp_path: Path) -> None:
    """The walker itself: the stage test above passes vacuously if this finds nothing."""
    closure = import_closure(ROOT / "stages" / "rl.py")
    # stages/rl.py -> affine.rl.ppo (package __init__ too) -> ... ; affine/__init__ runs on any affine import
    assert {"stages/rl.py", "affine/__init__.py", "affine/rl/__init__.py", "affine/rl/ppo.py"} <= closure
    assert "affine/stage.py" in closure and "affine/errors.py" in closure
    assert not covered("affine/rl/ppo.py", ["affine/r"]) and covered("affine/rl/ppo.py", ["affine/rl"])
