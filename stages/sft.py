"""Stage `sft`: LoRA SFT of models/base on data/sft → models/sft (best by eval loss), metrics/sft/."""

from affine.sft import train_sft
from affine.stage import run, stage_params


def main() -> None:
    params = stage_params("base", "sft")
    train_sft(params, "models/base", "data/sft/examples.jsonl", "models/sft", "checkpoints/sft", "metrics/sft")


if __name__ == "__main__":
    run(main)
