"""Batched, KV-cached generation for chat prompts.

Prompts are sorted by length before batching so each batch pads little (padding-aware batching), left-padded so
every row's new tokens start at the same column, and run under ``torch.inference_mode``.  Results come back in the
caller's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from affine.chat import render_prompt


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    new_tokens: int


def _batches(order: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), size):
        yield order[start : start + size]


@torch.inference_mode()
def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    temperature: float = 0.0,
    progress: str | None = None,
) -> list[Completion]:
    """Continue raw prompt strings (already chat-rendered); greedy when ``temperature`` is 0."""
    if not prompts:
        return []
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    results: list[Completion | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {"do_sample": False}
    bar = tqdm(total=len(prompts), desc=progress, disable=progress is None, unit="prompt")
    for batch in _batches(order, batch_size):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
            top_p=1.0,
            **sampling,
        )
        new = out[:, width:].cpu()
        for row, i in enumerate(batch):
            tokens = new[row].tolist()
            length = next((n + 1 for n, t in enumerate(tokens) if t == tokenizer.eos_token_id), len(tokens))
            text = tokenizer.decode(tokens[:length], skip_special_tokens=True)
            results[i] = Completion(text=text, prompt_tokens=len(encoded[i]), new_tokens=length)
        bar.update(len(batch))
    bar.close()
    return [r for r in results if r is not None]


def generate_chat(
    model: Any,
    tokenizer: Any,
    conversations: Iterable[list[dict[str, str]]],
    **kwargs: Any,
) -> list[Completion]:
    prompts = [render_prompt(tokenizer, messages) for messages in conversations]
    return generate_texts(model, tokenizer, prompts, **kwargs)
