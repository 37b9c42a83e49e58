"""Stage `report`: metrics/eval/*.json → metrics/report.md, a bar chart PNG and the dvc plots data."""

import json
from pathlib import Path

from affine.eval.report import write_report
from affine.stage import run, stage_params

MODELS = ("base", "sft", "rl")


def main() -> None:
    params = stage_params("evaluate")
    results = {}
    for name in MODELS:
        path = Path(f"metrics/eval/{name}.json")
        results[name] = json.loads(path.read_text()) if path.is_file() else None
    baseline = None
    if params.evaluate.baseline:
        baseline_path = Path(params.evaluate.baseline)
        if not baseline_path.is_file():
            raise FileNotFoundError(f"evaluate.baseline: {baseline_path} does not exist")
        baseline = json.loads(baseline_path.read_text())
    write_report(
        results, Path("metrics/report.md"), Path("metrics/plots/eval.png"), Path("metrics/plots/eval.json"), baseline
    )


if __name__ == "__main__":
    run(main)
