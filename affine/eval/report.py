"""The ``report`` stage's output: ``metrics/report.md``, a bar chart with 80 % interval whiskers, and a flat data file
for ``dvc plots``.

The data file is a JSON list of ``{"model", "env", "label", "mean", "lower", "upper"}`` rows (``label`` is
``"<model> <env>"``, one bar each), or TSV when its name ends in ``.tsv``.  Declare it in ``dvc.yaml`` as e.g.::

    plots:
      - metrics/plots/eval.json:
          template: bar_horizontal
          x: mean
          y: label

Models are expected as ``base``, ``sft``, ``rl`` (in that order; other names follow).  A model whose result is
absent or ``None`` is reported as not evaluated rather than failing the stage.  A ``baseline`` result (e.g. the
same stage's output from ``main``) is shown as one more column and compared against every model.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from affine.eval.compare import MISSING, all_envs, fmt_cell, fmt_num, markdown_table, rule_lines
from affine.eval.metrics import BINARY_ENVS, RULES, dominates

STAGES = ("base", "sft", "rl")
COLUMN_TITLES = {"base": "Base Model", "sft": "After SFT", "rl": "After RL", "baseline": "Baseline"}
ENV_TITLES = {
    "sat": "SAT",
    "abd": "ABD",
    "ded": "DED",
    "webshop": "WebShop",
    "alfworld": "ALFWorld",
    "babyai": "BabyAI",
    "sciworld": "SciWorld",
    "textcraft": "TextCraft",
}
RULE_TITLES = {
    "mean": "recipe rule (means)",
    "interval": "validator rule until 2025-11 (80 % intervals)",
    "threshold": "validator rule, December 2025 (threshold over the earlier model, Pareto over env subsets)",
    "challenger": "validator rule, 2026 (challenger vs champion, winner takes all)",
}

Result = dict[str, Any]


def env_title(env: str) -> str:
    short = env.rsplit(":", 1)[-1]
    return ENV_TITLES.get(short, short)


def _ordered(results: Mapping[str, Result | None], baseline: Result | None) -> tuple[dict[str, Result], list[str]]:
    """(present results in column order, the baseline last; expected stage names that are missing)."""
    names = [*STAGES, *(m for m in results if m not in STAGES)]
    present = {m: results[m] for m in names if results.get(m) is not None}
    missing = [m for m in STAGES if m not in present]
    if baseline is not None:
        present["baseline" if "baseline" not in present else "baseline (given)"] = baseline
    return present, missing


def _agentgym_score(r: Result) -> float | None:
    """n-weighted mean over the AgentGym envs (the recipe's single "AgentGym Score" row)."""
    ag = [e for name, e in r["envs"].items() if name.startswith("agentgym:")]
    total = sum(e["n"] for e in ag)
    return sum(e["n"] * e["mean"] for e in ag) / total if total else None


def summary_rows(results: Mapping[str, Result], envs: list[str]) -> list[tuple[str, list[Any]]]:
    """Rows of the recipe's "Expected Performance Improvements" table: (metric, one value per model)."""

    def per_model(fn: Any) -> list[Any]:
        return [fn(r) for r in results.values()]

    rows: list[tuple[str, list[Any]]] = []
    for env in envs:
        key, metric = ("accuracy", "Accuracy") if env in BINARY_ENVS else ("mean", "Score")
        rows.append((f"{env_title(env)} {metric}", per_model(lambda r, e=env, k=key: (r["envs"].get(e) or {}).get(k))))
    if any(e.startswith("agentgym:") for e in envs):
        rows.append(("AgentGym Score", per_model(_agentgym_score)))
    agg = [r.get("aggregate") or {} for r in results.values()]
    rows.append(("Weighted accuracy", [a.get("weighted_accuracy") for a in agg]))
    rows.append(("Overall success rate", [a.get("overall_success_rate") for a in agg]))
    rows.append(("Samples (n)", per_model(lambda r: sum(e["n"] for e in r["envs"].values()))))
    rows.append(("**Overall** (weighted mean)", [a.get("weighted_mean") for a in agg]))
    return rows


def _fmt(x: Any) -> str:
    return str(x) if isinstance(x, int) else fmt_num(x)


def earliest_first(results: Mapping[str, Result]) -> list[str]:
    """Earliest first, for the ordered rules: the baseline (an earlier revision's model), then base, SFT, RL."""
    baselines = [m for m in results if m.startswith("baseline")]
    return [*baselines, *(m for m in results if m not in baselines)]


def _pareto_section(results: Mapping[str, Result]) -> list[str]:
    lines = ["## Pareto verdict", ""]
    if len(results) < 2:
        return [*lines, "Only one model has results: nothing to compare.", ""]
    lines += [f"Ordered rules take the models as earliest first: {', '.join(earliest_first(results))}.", ""]
    for rule in RULES:
        lines += [f"**{RULE_TITLES[rule]}**:", "", *rule_lines(results, rule, earliest_first(results)), ""]
    return lines


def _baseline_section(results: Mapping[str, Result], envs: list[str]) -> list[str]:
    """Per-env mean deltas against the baseline (the last column) and each model's dominance verdict."""
    base_name = list(results)[-1]
    baseline = results[base_name]
    others = {n: r for n, r in results.items() if n != base_name}
    lines = ["## Against the baseline", ""]
    if not others:
        return [*lines, "No model results to compare with the baseline.", ""]
    header = ["Env (mean − baseline)", *others]
    rows = []
    for env in envs:
        b = baseline["envs"].get(env)
        cells = []
        for r in others.values():
            e = r["envs"].get(env)
            cells.append(MISSING if e is None or b is None else f"{e['mean'] - b['mean']:+.3f}")
        rows.append([env_title(env), *cells])
    lines += [markdown_table(header, rows), ""]
    for name, r in others.items():
        verdicts = []
        for rule in RULES:  # the baseline is the earlier model
            if dominates(r, baseline, rule=rule, a_first=False):
                verdicts.append(f"dominates the baseline ({rule} rule)")
            elif dominates(baseline, r, rule=rule, a_first=True):
                verdicts.append(f"is dominated by the baseline ({rule} rule)")
            else:
                verdicts.append(f"neither dominates ({rule} rule)")
        lines.append(f"- {name}: " + "; ".join(verdicts))
    return [*lines, ""]


def render_markdown(results: Mapping[str, Result | None], baseline: Result | None = None) -> str:
    present, missing = _ordered(results, baseline)
    lines = ["# Evaluation report", ""]
    if missing:
        lines += [f"Not evaluated (no results): {', '.join(missing)}.", ""]
    if not present:
        return "\n".join([*lines, "No evaluation results yet.", ""])
    envs = all_envs(present)
    titles = [COLUMN_TITLES.get(m, m) for m in present]
    lines += ["## Mean score per environment (80 % Jeffreys interval)", ""]
    rows = [[env_title(e), *(fmt_cell(r["envs"].get(e)) for r in present.values())] for e in envs]
    lines += [markdown_table(["Env", *titles], rows), ""]
    lines += ["## Summary", ""]
    summary = [[metric, *map(_fmt, vals)] for metric, vals in summary_rows(present, envs)]
    lines += [markdown_table(["Metric", *titles], summary), ""]
    lines += [
        (
            "Accuracy = share of full successes (score 1); Score = mean normalised score (SciWorld (s+100)/200); "
            "Overall = mean score weighted by samples per env; success rate = share of non-zero scores, averaged "
            "over envs."
        ),
        "",
    ]
    lines += _pareto_section(present)
    if baseline is not None:
        lines += _baseline_section(present, envs)
    return "\n".join(lines)


def plot_rows(results: Mapping[str, Result | None], baseline: Result | None = None) -> list[dict[str, Any]]:
    """Flat rows for ``dvc plots``: one per (model, env)."""
    present, _ = _ordered(results, baseline)
    return [
        {
            "model": model,
            "env": env,
            "label": f"{model} {env}",
            "mean": round(float(e["mean"]), 6),
            "lower": round(float(e["ci80_lower"]), 6),
            "upper": round(float(e["ci80_upper"]), 6),
        }
        for model, r in present.items()
        for env, e in r["envs"].items()
    ]


def plot_bars(results: Mapping[str, Result | None], out_png: Path, baseline: Result | None = None) -> None:
    """Grouped bars (one group per env, one bar per model) with whiskers spanning the 80 % interval.

    The whisker is drawn from the interval's midpoint, not the bar's top: the Jeffreys interval need not contain
    the mean (all-zero scores give a lower bound above 0).
    """
    present, _ = _ordered(results, baseline)
    envs = all_envs(present) if present else []
    fig = Figure(figsize=(max(6.0, 1.1 * len(envs) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if not present:
        ax.text(0.5, 0.5, "no evaluation results yet", ha="center", va="center")
        ax.set_axis_off()
    else:
        width = 0.8 / len(present)
        for i, (model, r) in enumerate(present.items()):
            xs = [j + (i - (len(present) - 1) / 2) * width for j, e in enumerate(envs) if e in r["envs"]]
            stats = [r["envs"][e] for e in envs if e in r["envs"]]
            ax.bar(xs, [s["mean"] for s in stats], width, label=COLUMN_TITLES.get(model, model))
            mid = [(s["ci80_lower"] + s["ci80_upper"]) / 2 for s in stats]
            half = [(s["ci80_upper"] - s["ci80_lower"]) / 2 for s in stats]
            ax.errorbar(xs, mid, yerr=half, fmt="none", ecolor="black", capsize=3, linewidth=1)
        ax.set_xticks(range(len(envs)), [env_title(e) for e in envs], rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("mean normalised score")
        ax.set_title("Evaluation: mean score per env, whiskers = 80 % Jeffreys interval")
        ax.legend(loc="best", fontsize="small")
    fig.savefig(out_png, dpi=120)


def write_report(
    results: Mapping[str, Result | None],
    out_md: Path,
    out_png: Path,
    plot_tsv_or_json: Path,
    baseline: Result | None = None,
) -> str:
    """Write the Markdown report, the PNG chart and the ``dvc plots`` data file; returns the Markdown."""
    out_md, out_png, data = Path(out_md), Path(out_png), Path(plot_tsv_or_json)
    for p in (out_md, out_png, data):
        p.parent.mkdir(parents=True, exist_ok=True)
    text = render_markdown(results, baseline)
    out_md.write_text(text, encoding="utf-8")
    plot_bars(results, out_png, baseline)
    rows = plot_rows(results, baseline)
    if data.suffix == ".tsv":
        with data.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, ["model", "env", "label", "mean", "lower", "upper"], delimiter="\t")
            writer.writeheader()
            writer.writerows(rows)
    else:
        data.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return text
