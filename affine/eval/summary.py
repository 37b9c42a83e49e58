"""The few numbers ``dvc metrics show`` / ``dvc metrics diff`` declare: ``metrics/summary/<model>.json``.

Why a separate file: the full per-stage files (``metrics/eval/*.json``, dvclive's ``metrics.json``, SFT's summary)
mix scores with timings and bookkeeping (``wall_s``, ``tokens_per_s``, ``runtime``, counts), 93 columns in one
``dvc metrics show`` table.  One small file per model, with the same keys in each, makes ``dvc metrics show`` one row
per model and ``dvc metrics diff`` a list of score changes only.  The full files stay in git, undeclared.

Keys: ``<env>.mean``/``<env>.lo``/``<env>.hi`` (mean and 80 % Jeffreys interval per env, ``<env>`` the short name,
e.g. ``sat``), ``overall`` (the sample-weighted mean) and, for ``base``/``sft``, ``eval_loss`` on the SFT validation
split (from ``metrics/sft/summary.json``).  Values are rounded to 4 decimals so the table stays narrow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DIGITS = 4
EVAL_LOSS_KEYS = {"base": "base_eval_loss", "sft": "eval_loss"}  # metrics/sft/summary.json key per model


def _round(x: Any) -> float | None:
    return None if x is None else round(float(x), DIGITS)


def key_metrics(result: Mapping[str, Any] | None, eval_loss: float | None = None) -> dict[str, Any]:
    """One model's declared metrics; ``{}`` when it was not evaluated (an empty row, not a failed stage)."""
    if result is None:
        return {}
    out: dict[str, Any] = {}
    for env, stats in result["envs"].items():
        out[env.rsplit(":", 1)[-1]] = {
            "mean": _round(stats["mean"]),
            "lo": _round(stats["ci80_lower"]),
            "hi": _round(stats["ci80_upper"]),
        }
    overall = (result.get("aggregate") or {}).get("weighted_mean")
    if overall is not None:
        out["overall"] = _round(overall)
    if eval_loss is not None:
        out["eval_loss"] = _round(eval_loss)
    return out


def write_summaries(
    results: Mapping[str, Mapping[str, Any] | None], sft_summary: Mapping[str, Any] | None, out_dir: Path
) -> dict[str, dict[str, Any]]:
    """Write ``out_dir/<model>.json`` for every model in ``results``; returns what was written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for model, result in results.items():
        loss_key = EVAL_LOSS_KEYS.get(model)
        loss = (sft_summary or {}).get(loss_key) if loss_key else None
        written[model] = key_metrics(result, loss)
        (out_dir / f"{model}.json").write_text(json.dumps(written[model], indent=2) + "\n", encoding="utf-8")
    return written
