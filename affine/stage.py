"""What every ``stages/*.py`` entry point shares: logging, thread setup, and one clear line on known errors."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import yaml

from affine.config import Params, ParamsError, load_params, parse_params
from affine.errors import StageError
from affine.threads import configure_threads

# ParamsError, ModelError, TemplateError, SandboxUnavailable, ...: see affine.errors
KNOWN_ERRORS = (StageError, FileNotFoundError)

log = logging.getLogger(__name__)


def setup_logging(force: bool = True) -> None:
    """Timestamped INFO logs on stderr; ``force=False`` keeps handlers a caller already installed."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=force)
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "dvc_objects"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # peft 0.21 probes the deprecated `is_gradient_checkpointing` property whenever it wraps a model
    # (PeftModel.__init__), which printed this FutureWarning in every stage that loads an adapter.
    # Only that one message is silenced.
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def stage_params(*sections: str, path: str | Path = "params.yaml") -> Params:
    """The params a stage reads, failing only on the ``sections`` it reads (those its ``dvc.yaml`` entry lists).

    Why not :func:`load_params` alone: it validates the whole file, so a bad ``rl`` key stopped the first stage
    ``dvc repro`` ran and DVC reported "failed to reproduce 'sft'".  Here a bad section the stage does not read is a
    warning (that section falls back to its defaults, which this stage never uses), and the stage that reads it is
    the one that fails.  Unknown top-level sections and a file that is not a YAML mapping stop every stage.
    """
    try:
        return load_params(path)
    except ParamsError:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            raw = None  # missing or not YAML: load_params's message says so
        if not isinstance(raw, dict) or not set(raw) <= set(Params.model_fields):
            raise
    bad = {}
    for name, value in raw.items():
        try:
            parse_params({name: value})
        except ParamsError as exc:
            bad[name] = str(exc).removeprefix("invalid params: ")
    for name, problem in bad.items():
        if name not in sections:
            log.warning("params.yaml: %s (this stage does not read `%s`; the stages that do will stop)", problem, name)
    mine = [name for name in sections if name in bad]
    if mine:
        raise ParamsError("invalid params: " + "; ".join(bad[name] for name in mine))
    return parse_params({name: value for name, value in raw.items() if name not in bad})


def run(main: Callable[[Params], object], *sections: str, params_path: str | Path = "params.yaml") -> None:
    """Run a stage on its params; a bad param, a missing model or input file exits 2 with ``error: <what to fix>``.

    ``sections`` are the params sections the stage reads (its ``dvc.yaml`` entry's, see :func:`stage_params`): the
    file is parsed once, here, and handed to ``main``.  Torch's thread count is set from ``base.num_threads`` before
    ``main`` starts (and logged), see affine.threads.
    """
    setup_logging()
    try:
        params = stage_params(*sections, path=params_path)
        configure_threads(params.base.num_threads)
        main(params)
    except KNOWN_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
