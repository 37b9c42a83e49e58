"""Stage `evaluate@<model>`: score base / sft / rl on held-out tasks → metrics/eval/<model>.json, data/eval/."""

import sys

from affine.eval.evaluate import evaluate
from affine.stage import run, stage_params


def main() -> None:
    which = sys.argv[1]
    params = stage_params("base", "envs", "evaluate")
    evaluate(params, which, "models", f"metrics/eval/{which}.json", f"data/eval/{which}.jsonl")


if __name__ == "__main__":
    run(main)
