"""Stage `report`: metrics/eval/*.json → metrics/report.md, the eval bar chart, training-curve PNGs for `dvc plots`
and the key metrics `dvc metrics show` declares (metrics/summary/<model>.json)."""

import json
from pathlib import Path

from affine.config import Params
from affine.eval.curves import RL_PANELS, SFT_PANELS, plot_curves
from affine.eval.report import write_report
from affine.eval.summary import write_summaries
from affine.stage import run

MODELS = ("base", "sft", "rl")


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def main(params: Params) -> None:
    results = {name: _json(Path(f"metrics/eval/{name}.json")) for name in MODELS}
    baseline = None
    if params.evaluate.baseline:
        baseline_path = Path(params.evaluate.baseline)
        if not baseline_path.is_file():
            raise FileNotFoundError(f"evaluate.baseline: {baseline_path} does not exist")
        baseline = json.loads(baseline_path.read_text())
    write_report(
        results, Path("metrics/report.md"), Path("metrics/plots/eval.png"), Path("metrics/plots/eval.json"), baseline
    )
    write_summaries(results, _json(Path("metrics/sft/summary.json")), Path("metrics/summary"))
    plots = Path("metrics/plots")
    plot_curves(Path("metrics/sft/plots/metrics"), SFT_PANELS, plots / "sft.png", "SFT (dvclive, metrics/sft)")
    plot_curves(Path("metrics/rl/plots/metrics"), RL_PANELS, plots / "rl.png", "RL (dvclive, metrics/rl)")


if __name__ == "__main__":
    run(main, "evaluate")
