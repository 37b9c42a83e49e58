"""The policy side of RL: the actor-critic module, the trainable policy and its frozen reference, episode batches.

Split out of :mod:`affine.rl.ppo` (which keeps the algorithm: advantages, the update, the loop) so each file reads
in one sitting.  Decisions, and why:

* **Policy = the SFT LoRA adapter, trained further** (when ``policy_dir`` holds ``adapter_config.json``).  The
  output ``models/rl`` is then an adapter on the same base as ``models/sft``, so evaluation and comparison load both
  the same way; it works on 4/8-bit bases (merging SFT into quantised weights would be lossy) and stores megabytes,
  not a model copy.  The **reference** (SFT) policy is a second, frozen copy of that adapter (``"reference"``),
  switched in for one no-grad forward per rollout: it costs only the LoRA's memory.  When ``policy_dir`` is a full
  model (``sft.merge``, or a base model), a fresh LoRA (``sft.lora_*`` settings) is added instead and the reference
  is that model with the adapter disabled (``disable_adapter()``).
* **Log-probs at the sampling temperature** (logits / ``rl.temperature``): the ratio must compare the distribution
  tokens were actually drawn from.
* **Only action positions reach the lm_head**: the full-vocabulary logits of every observation token would cost
  more than the trunk itself, and observations are never trained on.
* **The trunk's activations are the memory** (``rl.gradient_checkpointing``, ``rl.bf16``): a ~1k-token AgentGym
  episode keeps ~3 GB of fp32 activations for backward on the 135M model (minibatch 8 was OOM-killed at 19 GB);
  recomputing them in backward and running the matmuls under bf16 autocast where the hardware has native bf16 is
  measured in ``bench/bench_rl_update.py``.  Scoring and the update run under the same autocast, so the first
  epoch's ratio is still exactly 1; the value head stays fp32 (:mod:`affine.rl.value_head`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from affine.config import Params
from affine.model import load_model
from affine.rl.losses import entropy_from_logits, token_logprobs
from affine.rl.value_head import ValueHead
from affine.rollout import Episode

DEFAULT, REFERENCE = "default", "reference"
Batch = dict[str, torch.Tensor]


def without_dropout(module: nn.Module) -> nn.Module:
    """Train mode (activation recompute only runs in it) with every dropout off: see ``affine.rl.ppo``'s docstring."""
    module.train()
    for layer in module.modules():
        if isinstance(layer, nn.Dropout):
            layer.eval()
    return module


class ActorCritic(nn.Module):
    """The policy LM and (PPO only) its value head as one module, so DDP wraps and syncs them together."""

    def __init__(self, policy: nn.Module, value_head: ValueHead | None, autocast: torch.dtype | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = value_head
        self.autocast = autocast  # e.g. torch.bfloat16: the trunk and lm_head under torch.autocast

    def forward(
        self, ids: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor, temperature: float, values: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(logprobs (B,T), entropy (scalar), values (B,T) | None, last_values (B,) | None)``.

        Index ``t`` is token ``t``'s log-prob / the value of the state before it, both read at position ``t-1``;
        only action positions go through the lm_head and softmax (this assumes ``logits = lm_head(last hidden)``,
        true of Llama/SmolLM/Qwen; a test checks it against the model's own logits).  ``last_values`` is the value
        at each row's last real position: the bootstrap of a truncated episode.
        """
        want_values = values and self.value_head is not None
        # Full-vocabulary logits only where they are needed: the lm_head over every position of a long
        # conversation would cost more than the whole 2-layer trunk (and the observations are never trained on).
        act = mask[:, 1:].bool()
        with torch.autocast(ids.device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            out = self.policy(
                input_ids=ids, attention_mask=attention, output_hidden_states=True, use_cache=False, logits_to_keep=1
            )
            hidden = out.hidden_states[-1]
            logits = self.policy.get_output_embeddings()(hidden[:, :-1][act])
        logits = logits.float() / temperature
        picked = token_logprobs(logits, ids[:, 1:][act])
        logprobs = F.pad(torch.zeros(act.shape, device=ids.device).masked_scatter(act, picked), (1, 0))
        entropy = entropy_from_logits(logits).mean() if logits.numel() else logits.new_zeros(())
        if not want_values:
            return logprobs, entropy, None, None
        per_position = self.value_head(hidden)
        last = per_position[torch.arange(ids.shape[0], device=ids.device), attention.sum(1) - 1]
        return logprobs, entropy, F.pad(per_position[:, :-1], (1, 0)), last


def autocast_dtype(enabled: bool, device: torch.device | str) -> torch.dtype | None:
    """bf16 where asked and the hardware runs it natively (CUDA with bf16, or avx512_bf16/AMX CPUs), else None."""
    if not enabled:
        return None
    if torch.device(device).type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    from affine.sft import cpu_has_native_bf16

    return torch.bfloat16 if cpu_has_native_bf16() else None


def load_policy(params: Params, policy_dir: str | Path) -> tuple[Any, Any]:
    """The trainable policy (adapter ``default``) and tokenizer; see the module docstring for the reference."""
    model, tokenizer = _load_policy(params, policy_dir)
    if params.rl.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tokenizer


def _load_policy(params: Params, policy_dir: str | Path) -> tuple[Any, Any]:
    base, sft = params.base, params.sft
    options = {"dtype": base.dtype, "load_in_8bit": base.load_in_8bit, "load_in_4bit": base.load_in_4bit}
    if (Path(policy_dir) / "adapter_config.json").is_file():
        model, tokenizer = load_model(str(policy_dir), trainable_adapter=True, **options)
        model.load_adapter(str(policy_dir), adapter_name=REFERENCE, is_trainable=False)
        model.set_adapter(DEFAULT)
        return model, tokenizer
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_model(str(policy_dir), **options)
    config = LoraConfig(
        r=sft.lora_r,
        lora_alpha=sft.lora_alpha,
        lora_dropout=sft.lora_dropout,
        target_modules=list(sft.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config), tokenizer


@contextmanager
def reference_policy(model: Any) -> Iterator[None]:
    """Make ``model`` compute the reference (SFT) policy for the duration of the block."""
    if REFERENCE in getattr(model, "peft_config", {}):
        model.set_adapter(REFERENCE, inference_mode=True)
        try:
            yield
        finally:
            model.set_adapter(DEFAULT)
    else:
        with model.disable_adapter():
            yield


def collate(episodes: list[Episode], pad_id: int) -> Batch:
    """Right-padded ``(N, L)`` tensors of the episodes' token rows (right: causal positions need no shifting)."""
    lengths = torch.tensor([len(e.token_ids) for e in episodes])
    width = int(lengths.max())
    batch = {
        "ids": torch.full((len(episodes), width), pad_id, dtype=torch.long),
        "attention": torch.zeros(len(episodes), width, dtype=torch.long),
        "mask": torch.zeros(len(episodes), width, dtype=torch.bool),
        "rewards": torch.zeros(len(episodes), width),
        "turn_ends": torch.zeros(len(episodes), width, dtype=torch.bool),
    }
    for row, e in enumerate(episodes):
        n = len(e.token_ids)
        batch["ids"][row, :n] = e.token_ids
        batch["attention"][row, :n] = 1
        batch["mask"][row, :n] = e.action_mask
        batch["rewards"][row, :n] = e.token_rewards
        batch["turn_ends"][row, :n] = e.turn_ends
    batch["terminal"] = torch.tensor([e.terminal for e in episodes])
    batch["lengths"] = lengths
    return batch


def select(batch: Batch, rows: torch.Tensor, device: torch.device | str = "cpu") -> Batch:
    """Rows of ``batch``, trimmed to their own longest sequence, on ``device``."""
    width = int(batch["lengths"][rows].max())
    return {k: (v[rows, :width] if v.dim() == 2 else v[rows]).to(device) for k, v in batch.items()}


@torch.no_grad()
def score_rollout(model: ActorCritic, batch: Batch, chunk: int, temperature: float, device: Any) -> None:
    """Fill ``old_logprobs``, ``ref_logprobs`` and (PPO) ``old_values``/``last_values`` into ``batch``, in place."""
    n, width = batch["ids"].shape
    batch["old_logprobs"], batch["ref_logprobs"] = torch.zeros(n, width), torch.zeros(n, width)
    batch["old_values"], batch["last_values"] = torch.zeros(n, width), torch.zeros(n)
    for rows in torch.arange(n).split(chunk):
        mb = select(batch, rows, device)
        w = mb["ids"].shape[1]
        logprobs, _, values, last = model(mb["ids"], mb["attention"], mb["mask"], temperature)
        batch["old_logprobs"][rows, :w] = logprobs.cpu()
        if values is not None:
            batch["old_values"][rows, :w] = values.cpu()
            batch["last_values"][rows] = last.cpu()
        with reference_policy(model.policy):
            ref, _, _, _ = model(mb["ids"], mb["attention"], mb["mask"], temperature, values=False)
        batch["ref_logprobs"][rows, :w] = ref.cpu()
