"""Stage `prepare`: resolve `base.model` and write it once as a plain HF checkpoint in models/base."""

from affine.config import Params
from affine.model import prepare_base
from affine.stage import run


def main(params: Params) -> None:
    prepare_base(params.base.model, "models/base", params.base.dtype)


if __name__ == "__main__":
    run(main, "base")
