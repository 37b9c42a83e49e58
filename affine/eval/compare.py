"""Compare evaluation results: load ``metrics/eval/*.json`` (from disk or another git revision), tabulate them,
and say who Pareto-dominates whom.  Backs ``affine compare RESULTS.json... [--rev REV] [--rule mean|interval]``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from affine.eval.metrics import RULES, common_envs, dominates, env_winner, pareto_frontier

Result = dict[str, Any]
MISSING = "—"


class ResultsFormatError(ValueError):
    """A file that is not valid JSON or not in the ``metrics/eval/<model>.json`` shape."""


REQUIRED_ENV_KEYS = ("n", "mean", "ci80_lower", "ci80_upper")


def check_result(obj: Any, source: str) -> Result:
    """Return ``obj`` if it has the result-file shape (``envs`` with n, mean and interval per env)."""
    envs = obj.get("envs") if isinstance(obj, dict) else None
    if not isinstance(envs, dict):
        raise ResultsFormatError(f"{source}: not a results file (expected an object with an 'envs' mapping)")
    for env, stats in envs.items():
        missing = [k for k in REQUIRED_ENV_KEYS if not isinstance(stats, dict) or k not in stats]
        if missing:
            raise ResultsFormatError(f"{source}: env {env!r} lacks {missing}")
    return obj


def _parse(text: str, source: str) -> Result:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsFormatError(f"{source}: invalid JSON ({exc})") from exc
    return check_result(obj, source)


def _add(out: dict[str, Result], name: str, result: Result, source: str) -> None:
    """Insert under ``name``; a name already taken gets the source appended so nothing is overwritten."""
    out[name if name not in out else f"{name} ({source})"] = result


def load_results(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Result]:
    """Read result files; keys are each file's ``model`` field (its stem when absent)."""
    out: dict[str, Result] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"results file not found: {p}")
        result = _parse(p.read_text(encoding="utf-8"), str(p))
        _add(out, str(result.get("model") or p.stem), result, str(p))
    return out


def load_results_at_rev(
    rev: str, paths: Iterable[str | os.PathLike[str]], repo_dir: str | os.PathLike[str] = "."
) -> dict[str, Result]:
    """Read result files as they were at git revision ``rev`` (``git show REV:./path``); keys are ``<model>@<rev>``.

    Paths are relative to ``repo_dir`` (absolute paths are made relative to it).  A revision or file git does not
    know raises FileNotFoundError with git's message.
    """
    out: dict[str, Result] = {}
    for p in paths:
        rel = os.path.relpath(p, repo_dir) if os.path.isabs(p) else os.fspath(p)
        spec = f"{rev}:./{Path(rel).as_posix()}"
        try:
            proc = subprocess.run(
                ["git", "-C", os.fspath(repo_dir), "show", spec], capture_output=True, text=True, check=False
            )
        except FileNotFoundError as exc:
            raise FileNotFoundError("git is not installed; cannot read results at another revision") from exc
        if proc.returncode != 0:
            raise FileNotFoundError(f"cannot read {rel} at revision {rev!r}: {proc.stderr.strip()}")
        result = _parse(proc.stdout, spec)
        _add(out, f"{result.get('model') or Path(rel).stem}@{rev}", result, spec)
    return out


def all_envs(results: Mapping[str, Result]) -> list[str]:
    """Every env any result has, in first-seen order."""
    seen: dict[str, None] = {}
    for r in results.values():
        seen.update(dict.fromkeys(r["envs"]))
    return list(seen)


def short_names(envs: Sequence[str]) -> dict[str, str]:
    """``affine:sat`` -> ``sat`` when the short names stay unique, else the full names."""
    short = {e: e.rsplit(":", 1)[-1] for e in envs}
    return short if len(set(short.values())) == len(short) else {e: e for e in envs}


def fmt_num(x: Any, digits: int = 3) -> str:
    return MISSING if x is None else f"{float(x):.{digits}f}"


def fmt_cell(stats: Mapping[str, Any] | None) -> str:
    """``0.550 [0.480, 0.610]``: mean and 80 % interval."""
    if stats is None:
        return MISSING
    return f"{fmt_num(stats['mean'])} [{fmt_num(stats['ci80_lower'])}, {fmt_num(stats['ci80_upper'])}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A padded Markdown pipe table (readable as plain text too); first column left-aligned, others right."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in pairs]
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join(":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def format_table(results: Mapping[str, Result]) -> str:
    """Models x envs: mean [80 % interval] per env, then the aggregate columns."""
    if not results:
        return "(no results)"
    envs = all_envs(results)
    names = short_names(envs)
    header = ["model", *(names[e] for e in envs), "weighted_mean", "weighted_acc", "success_rate"]
    rows = []
    for model, r in results.items():
        agg = r.get("aggregate") or {}
        rows.append(
            [
                model,
                *(fmt_cell(r["envs"].get(e)) for e in envs),
                fmt_num(agg.get("weighted_mean")),
                fmt_num(agg.get("weighted_accuracy")),
                fmt_num(agg.get("overall_success_rate")),
            ]
        )
    return markdown_table(header, rows)


def dominance_lines(results: Mapping[str, Result], rule: str = "mean") -> list[str]:
    """One line per ordered pair (A, B) where A dominates B, with the env tally."""
    lines = []
    for a_name, a in results.items():
        for b_name, b in results.items():
            if a_name != b_name and dominates(a, b, rule=rule):
                shared = common_envs(a, b)
                wins = sum(env_winner(a["envs"][e], b["envs"][e], rule) == 1 for e in shared)
                lines.append(
                    f"{a_name} dominates {b_name} (better on {wins} of {len(shared)} shared envs, worse on none)"
                )
    return lines


def compare(results: Mapping[str, Result], rule: str = "mean") -> str:
    """The table, who dominates whom under ``rule``, and the Pareto frontier, as Markdown text."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    explain = {
        "mean": "A dominates B when A's mean is >= B's on every shared env and > on at least one",
        "interval": "X beats Y on an env when X's 80% lower bound > Y's upper bound; A dominates B when B beats A "
        "nowhere and A beats B somewhere",
    }[rule]
    lines = dominance_lines(results, rule) or ["no model dominates another"]
    frontier = pareto_frontier(results, rule) if results else []
    return "\n".join(
        [
            format_table(results),
            "",
            f"Dominance (rule: {rule}; {explain}):",
            *(f"- {s}" for s in lines),
            "",
            f"Pareto frontier: {', '.join(frontier) if frontier else MISSING}",
        ]
    )


def main_compare(paths: list[str], rev: str | None = None, rule: str = "mean") -> str:
    """``affine compare``: the given files, plus the same files at ``rev`` when given, compared under ``rule``."""
    if not paths:
        raise ValueError("give at least one results file")
    results = load_results(paths)
    if rev:
        for name, r in load_results_at_rev(rev, paths).items():
            _add(results, name, r, name)
    return compare(results, rule)
