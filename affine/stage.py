"""What every ``stages/*.py`` entry point shares: logging, thread setup, and one clear line on known errors."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable

from affine.chat import TemplateError
from affine.config import ParamsError, load_params
from affine.model import ModelError
from affine.threads import configure_threads

KNOWN_ERRORS = (ParamsError, ModelError, TemplateError, FileNotFoundError)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "dvc_objects"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Our code uses transformers' current `activation_checkpointing` names; peft 0.21 still probes the deprecated
    # `is_gradient_checkpointing` property whenever it wraps a model (PeftModel.__init__), which printed this
    # FutureWarning in every stage that loads an adapter. Only that one message is silenced.
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def run(main: Callable[[], object], params_path: str = "params.yaml") -> None:
    """Run a stage; a bad param, a missing model or input file exits 2 with ``error: <what to fix>``.

    Torch's thread count is set from ``base.num_threads`` before the stage starts (and logged), see affine.threads.
    """
    setup_logging()
    try:
        configure_threads(load_params(params_path).base.num_threads)
        main()
    except KNOWN_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
