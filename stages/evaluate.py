"""Stage `evaluate@<model>`: score base / sft / rl on held-out tasks → metrics/eval/<model>.json, data/eval/."""

import sys

from affine.config import Params
from affine.eval.evaluate import evaluate
from affine.sandbox import configure
from affine.stage import run


def main(params: Params) -> None:
    which = sys.argv[1]
    configure(**params.sandbox.model_dump())  # stops here, in one line, if the sandbox can't be set up
    evaluate(params, which, "models", f"metrics/eval/{which}.json", f"data/eval/{which}.jsonl")


if __name__ == "__main__":
    run(main, "base", "envs", "evaluate", "sandbox")
