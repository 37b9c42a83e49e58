"""Stage `sft`: LoRA SFT of models/base on data/sft → models/sft (best by eval loss), metrics/sft/."""

from affine.config import Params
from affine.sft import train_sft
from affine.stage import run


def main(params: Params) -> None:
    train_sft(params, "models/base", "data/sft/examples.jsonl", "models/sft", "checkpoints/sft", "metrics/sft")


if __name__ == "__main__":
    run(main, "base", "sft")
