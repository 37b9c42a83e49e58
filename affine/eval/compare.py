"""Compare evaluation results: load ``metrics/eval/*.json`` (from disk or another git revision), tabulate them,
and say who Pareto-dominates whom.  Backs ``affine compare RESULTS... [--rev REV] [--rule RULE] [--order A,B,...]``.

Inputs are result files, or per-task sample files (``data/eval/<model>.jsonl``: rows with ``env``, ``task_id`` and
``score``), which also give the ``challenger`` rule the per-task scores it compares on tasks both models completed.
The ordered rules (``threshold``, ``challenger``) read which model came first from ``order`` (default: input order).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from affine.eval.metrics import (
    ORDERED_RULES,
    RULES,
    build_results,
    champion,
    common_envs,
    dominates,
    env_winner,
    normalise_score,
    pareto_frontier,
    seniority,
    subset_survival,
)

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


def _parse_samples(text: str, source: str, model: str) -> Result:
    """A result built from per-task sample rows, each env keeping ``tasks`` (task id -> normalised score)."""
    per_env: dict[str, dict[str, float]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            env, task, score = row["env"], str(row["task_id"]), float(row["score"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ResultsFormatError(
                f"{source}:{number}: not a sample row with env, task_id and score ({exc})"
            ) from None
        per_env.setdefault(env, {})[task] = score
    if not per_env:
        raise ResultsFormatError(f"{source}: no sample rows")
    result = build_results(model, None, {env: list(tasks.values()) for env, tasks in per_env.items()})
    for env, tasks in per_env.items():
        result["envs"][env]["tasks"] = {t: normalise_score(env, s) for t, s in tasks.items()}
    return result


def load_results(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Result]:
    """Read result files (``.json``) or sample files (``.jsonl``); keys are the ``model`` field, else the stem."""
    out: dict[str, Result] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"results file not found: {p}")
        text = p.read_text(encoding="utf-8")
        result = _parse_samples(text, str(p), p.stem) if p.suffix == ".jsonl" else _parse(text, str(p))
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
        stem = Path(rel).stem
        result = _parse_samples(proc.stdout, spec, stem) if rel.endswith(".jsonl") else _parse(proc.stdout, spec)
        _add(out, f"{result.get('model') or stem}@{rev}", result, spec)
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


def dominance_lines(results: Mapping[str, Result], rule: str = "mean", order: Sequence[str] | None = None) -> list[str]:
    """One line per ordered pair (A, B) where A dominates B, with the env tally (the earlier one named under ordered
    rules)."""
    rank = seniority(results, order)
    lines = []
    for a_name, a in results.items():
        for b_name, b in results.items():
            a_first = rank[a_name] < rank[b_name]
            if a_name == b_name or not dominates(a, b, rule=rule, a_first=a_first):
                continue
            shared = common_envs(a, b)
            if rule == "challenger":
                how = "its challenge" if not a_first else f"{b_name}'s challenge"
                lines.append(f"{a_name} dominates {b_name} ({how}: {'won' if not a_first else 'failed'})")
                continue
            wins = sum(env_winner(a["envs"][e], b["envs"][e], rule, a_first) == 1 for e in shared)
            tail = f" ({'earlier' if a_first else 'later'} model)" if rule in ORDERED_RULES else ""
            lines.append(
                f"{a_name} dominates {b_name} (better on {wins} of {len(shared)} shared envs, worse on none){tail}"
            )
    return lines


EXPLAIN = {
    "mean": "A dominates B when A's mean is >= B's on every shared env and > on at least one",
    "interval": "X beats Y on an env when X's 80% lower bound > Y's upper bound; A dominates B when B beats A "
    "nowhere and A beats B somewhere",
    "threshold": "the later model wins an env only above prior + clamp((1 - prior) x 0.2, 0.02, 0.10), else the "
    "earlier keeps it; A dominates B when it wins every shared env",
    "challenger": "the challenger (later) is dominant on an env above champion + 0.03 and not worse at >= 0.98 x "
    "champion; it wins when dominant on >= 1 env and not worse on all (tasks both completed)",
}


def rule_lines(results: Mapping[str, Result], rule: str, order: Sequence[str] | None = None) -> list[str]:
    """The verdict under ``rule`` as Markdown lines: dominance, then the frontier (or the champion)."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    order = list(order) if order is not None else None
    seniority(results, order)  # a bad order fails here, before any verdict
    lines = [f"- {s}" for s in (dominance_lines(results, rule, order) or ["no model dominates another"])]
    if rule == "challenger" and results:
        final, bouts = champion(results, order)
        for bout in bouts:
            verdict = "wins" if bout["wins"] else "loses"
            dominant, worse = ", ".join(bout["dominant"]) or MISSING, ", ".join(bout["worse"]) or MISSING
            lines.append(
                f"- {bout['challenger']} challenges {bout['champion']}: dominant on {dominant}; worse on {worse}; "
                f"{verdict}"
            )
        return [*lines, f"- Champion: {final}"]
    frontier = pareto_frontier(results, rule, order=order) if results else []
    lines.append(f"- Pareto frontier: {', '.join(frontier) if frontier else MISSING}")
    if rule == "threshold" and len(results) > 1:
        for name, (alive, total) in subset_survival(results, order).items():
            lines.append(f"- {name} is undominated in {alive} of {total} env subsets")
    return lines


def compare(results: Mapping[str, Result], rule: str = "mean", order: Sequence[str] | None = None) -> str:
    """The table, who dominates whom under ``rule``, and the Pareto frontier (or champion), as Markdown text."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    lines = rule_lines(results, rule, order)
    earliest = f"; earliest first: {', '.join(order or results)}" if rule in ORDERED_RULES else ""
    return "\n".join([format_table(results), "", f"Dominance (rule: {rule}; {EXPLAIN[rule]}{earliest}):", *lines])


def main_compare(
    paths: list[str], rev: str | None = None, rule: str = "mean", order: Sequence[str] | None = None
) -> str:
    """``affine compare``: the given files, plus the same files at ``rev`` when given, compared under ``rule``.

    ``order`` names the models earliest first (the ordered rules); by default the files at ``rev`` come first, as
    the earlier models, then the given files in order.
    """
    if not paths:
        raise ValueError("give at least one results file")
    results = load_results(paths)
    current = list(results)
    if rev:
        for name, r in load_results_at_rev(rev, paths).items():
            _add(results, name, r, name)
    if order is None and rule in ORDERED_RULES:
        order = [*(n for n in results if n not in current), *current]
    return compare(results, rule, order)
