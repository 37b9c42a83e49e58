"""Stage `prepare`: resolve `base.model` and write it once as a plain HF checkpoint in models/base."""

from affine.model import prepare_base
from affine.stage import run, stage_params


def main() -> None:
    params = stage_params("base")
    prepare_base(params.base.model, "models/base", params.base.dtype)


if __name__ == "__main__":
    run(main)
