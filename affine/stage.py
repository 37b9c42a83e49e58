"""What every ``stages/*.py`` entry point shares: logging, params loading, and one clear line on known errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from affine.chat import TemplateError
from affine.config import ParamsError
from affine.model import ModelError
from affine.sandbox import SandboxUnavailable

KNOWN_ERRORS = (ParamsError, ModelError, TemplateError, FileNotFoundError, SandboxUnavailable)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "dvc_objects"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(main: Callable[[], object]) -> None:
    """Run a stage; a bad param, a missing model or input file exits 2 with ``error: <what to fix>``."""
    setup_logging()
    try:
        main()
    except KNOWN_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
