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
RL_PANELS: list[Panel] = [
    ("episodes", [("shaped return", "return_mean.tsv"), ("success rate", "success_rate.tsv")]),
    ("score per env", [("*", "score/*.tsv")]),
    ("policy drift", [("KL to SFT policy", "kl_ref.tsv"), ("approx. KL per update", "approx_kl.tsv")]),
]


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
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    drawn = 0
    for ax, (panel_title, entries) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
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
