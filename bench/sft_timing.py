"""What bench_sft.py (CPU) and bench_gpu.py share: the step meter, plain TRL's config, and one timed training run.

Kept free of ``affine.collect``/``affine.envs`` imports so the GPU bench can run on a machine that has only torch,
transformers, peft, trl, datasets and pydantic.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

NEVER = 10**9  # eval/save interval for our config: nothing but training steps happens during the run


class StepMeter(TrainerCallback):
    """Seconds and tokens of each optimizer step; ``count`` is called by the training_step wrapper per micro-batch.

    On CUDA the clock is read only after a device synchronize at both ends: kernels are queued asynchronously, and
    without it a step's time would leak into the next one (or into logging).
    """

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self._start = 0.0
        self._tokens = self._padded = self._squares = 0

    def count(self, inputs: dict) -> None:
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        lengths = mask.sum(dim=1) if mask is not None else torch.full((ids.shape[0],), ids.shape[1])
        self._tokens += int(lengths.sum())
        self._squares += int((lengths.long() ** 2).sum())
        self._padded += ids.numel()

    @staticmethod
    def _sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self._sync()
        self._tokens = self._padded = self._squares = 0
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self._sync()
        seconds = time.perf_counter() - self._start
        self.steps.append(
            {"seconds": seconds, "tokens": self._tokens, "padded_tokens": self._padded, "squares": self._squares}
        )


def our_config(params: Any, output_dir: str, steps: int, batch_size: int, **overrides: Any) -> Any:
    """What the sft stage trains with (``affine.sft.sft_config``), run for ``steps`` steps with no eval or save.

    ``overrides`` replace other ``sft`` params, as ``dvc exp run -S sft.<key>=...`` would.
    """
    from affine.sft import sft_config

    update = {**overrides, "max_steps": steps, "batch_size": batch_size, "eval_steps": NEVER, "save_steps": NEVER}
    return sft_config(params.sft.model_copy(update=update), params.base.seed, output_dir)


def plain_config(output_dir: str, steps: int, batch_size: int, **overrides: Any) -> Any:
    """TRL's ``SFTConfig`` at its defaults, with only the run length, the batch size and ``overrides`` set."""
    from trl import SFTConfig

    # TRL defaults bf16=True, and transformers refuses bf16 without a GPU unless told use_cpu: the one addition needed.
    cpu = {} if torch.cuda.is_available() else {"use_cpu": True}
    return SFTConfig(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        report_to=[],
        **cpu,
        **overrides,
    )


def settings(config: Any) -> dict:
    keys = (
        "bf16",
        "fp16",
        "gradient_checkpointing",
        "assistant_only_loss",
        "completion_only_loss",
        "train_sampling_strategy",
        "packing",
        "padding_free",
        "max_length",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "use_cpu",
    )
    return {k: getattr(config, k, None) for k in keys}


def timed_training(
    side: str,
    model: Any,
    tokenizer: Any,
    rows: list[dict],
    make_config: Callable[[str], Any],
    peft_config: Any,
    warmup: int,
    eval_rows: list[dict] | None = None,
    callbacks: list[Any] | None = None,
) -> dict:
    """Train ``model`` with ``make_config(output_dir)`` and return the measured steps (the first ``warmup`` left out).

    ``squares`` is the sum of squared non-padding sequence lengths, which attention FLOPs need.
    """
    from datasets import Dataset
    from trl import SFTTrainer

    meter = StepMeter()
    with tempfile.TemporaryDirectory(prefix=f"bench_sft_{side}_") as output_dir:
        config = make_config(output_dir)
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[meter, *(callbacks or [])],
        )
        step = trainer.training_step

        def counted_step(model: Any, inputs: dict, *rest: Any, **kwargs: Any) -> Any:
            meter.count(inputs)
            return step(model, inputs, *rest, **kwargs)

        trainer.training_step = counted_step
        started = time.perf_counter()
        result = trainer.train()
        wall = time.perf_counter() - started
    measured = meter.steps[warmup:]
    seconds = sum(s["seconds"] for s in measured)
    tokens = sum(s["tokens"] for s in measured)
    padded = sum(s["padded_tokens"] for s in measured)
    return {
        "side": side,
        "settings": settings(config),
        "steps_run": len(meter.steps),
        "steps_measured": len(measured),
        "step_seconds": round(seconds, 3),
        "non_padding_tokens": tokens,
        "padded_tokens": padded,
        "squared_lengths": sum(s["squares"] for s in measured),
        "padding_fraction": round(1 - tokens / padded, 4) if padded else 0.0,
        "tokens_per_s": round(tokens / seconds, 2) if seconds else 0.0,
        "train_wall_s": round(wall, 3),
        "train_loss": result.training_loss,
    }
