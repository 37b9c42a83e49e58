"""Training curves as static PNGs (``metrics/plots/sft.png``, ``rl.png``) for ``dvc plots show``.

Why not dvclive's own series: declared as ``dvc plots`` they become one Vega chart per series (45 here, ``epoch``
and ``total_flos`` included) and DVC's HTML loads Vega from a CDN, so nothing renders offline.  A PNG is embedded
as an ``<img>``: a short, curated set that renders anywhere.  The TSVs stay where dvclive writes them
(``step<TAB>value`` with a header), for ``dvc plots show <tsv>`` on demand.
"""

from __future__ import annotations

import csv
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# (panel title, [(legend label, TSV path relative to the dvclive folder's plots/metrics)])
Panel = tuple[str, list[tuple[str, str]]]
SFT_PANELS: list[Panel] = [
    ("loss", [("train", "loss.tsv"), ("eval", "eval/loss.tsv"), ("base model (eval)", "base_loss.tsv")]),
    ("learning rate", [("learning rate", "learning_rate.tsv")]),
]
# The RL figure answers "is it learning?" first (success and score per env, return), then "how hard did the update
# push?" (approx. KL per update and clip fraction: both ~0 means the policy did not move), the critic's quality,
# rollout speed and the horizon the curriculum allowed (rl.horizon_schedule), all per iteration.
RL_PANELS: list[Panel] = [
    ("success per env", [("*", "success/*.tsv")]),
    ("score per env", [("*", "score/*.tsv")]),
    ("episodes", [("shaped return", "return_mean.tsv"), ("success rate", "success_rate.tsv")]),
    ("policy update", [("approx. KL per update", "approx_kl.tsv"), ("clip fraction", "clip_frac.tsv")]),
    ("KL to SFT policy", [("KL to SFT (rollout)", "kl_ref.tsv")]),
    ("critic", [("explained variance", "explained_variance.tsv")]),
    ("rollouts", [("generated tokens/s", "tokens_per_s.tsv")]),
    ("horizon", [("max turns", "max_turns.tsv"), ("turns played (mean)", "turns_mean.tsv")]),
]
COLUMNS = 4  # panels per row: eight RL panels in two readable rows


def read_series(path: Path) -> tuple[list[float], list[float]]:
    """``(steps, values)`` of a dvclive TSV; empty lists when it is absent or has no numeric rows."""
    steps: list[float] = []
    values: list[float] = []
    if not path.is_file():
        return steps, values
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            value_key = next((k for k in row if k not in ("step", "timestamp")), None)
            try:
                step, value = float(row["step"]), float(row[value_key])
            except (KeyError, TypeError, ValueError):
                continue
            steps.append(step)
            values.append(value)
    return steps, values


def _expand(series_dir: Path, label: str, pattern: str) -> list[tuple[str, Path]]:
    if "*" not in pattern:
        return [(label, series_dir / pattern)]
    return [(p.stem, p) for p in sorted(series_dir.glob(pattern))]


def plot_curves(series_dir: Path, panels: list[Panel], out_png: Path, title: str) -> int:
    """Draw ``panels`` side by side from the TSVs under ``series_dir``; returns how many series had data.

    A stage that has not run yet gives a labelled empty chart, so the report stage never fails on it.
    """
    series_dir, out_png = Path(series_dir), Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    columns = min(COLUMNS, len(panels))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(4.2 * columns, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    drawn = 0
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    for ax, (panel_title, entries) in zip(axes, panels, strict=False):
        for label, path in (pair for entry in entries for pair in _expand(series_dir, *entry)):
            steps, values = read_series(path)
            if len(steps) == 1:  # one measurement (the base model's eval loss): a reference line
                ax.axhline(values[0], linestyle="--", color="grey", label=label)
            elif steps:
                ax.plot(steps, values, marker="o" if len(steps) < 12 else None, markersize=3, label=label)
            drawn += bool(steps)
        ax.set_title(panel_title)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.savefig(out_png, dpi=100)
    return drawn
