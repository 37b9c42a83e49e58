"""Batched, KV-cached generation: the one generation core that evaluation and RL rollouts share.

Prompts are sorted by length before batching so each batch pads little (padding-aware batching), left-padded so
every row's new tokens start at the same column, and run under ``torch.inference_mode``.  Results come back in the
caller's order.

This is the ``hf`` fallback engine (``base.engine: hf``), kept plain on purpose: transformers' own ``generate``,
batched, KV cache on.  The default engine is vLLM (:mod:`affine.engine`), which ``generate_ids`` hands the prompts to
when given one.  The hand-written grouped prefill and CPU decode attention that used to sit here were removed:
vLLM was faster than HF with them (x1.34 single-turn, x1.73 multi-turn; ``bench/README.md``, "Engines, second
round"), so only the fallback lost them.
"""

from __future__ import annotations

from collections.abc import Iterable
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


@torch.inference_mode()
def generate_ids(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    batch_size: int,
    progress: str | None = None,
) -> list[list[int]]:
    """Sample continuations of token-id prompts; each cut after its first eos (kept).  Input order is kept.

    Longest prompts first so each chunk pads little; left padding, so new tokens share a column; the model's KV
    cache is used inside each ``generate`` call.  ``model`` may be
    an engine instead (:class:`affine.engine.VLLMEngine`, ``base.engine: vllm``): the prompts go to it as they are.
    """
    if hasattr(model, "generate_token_ids"):
        return model.generate_token_ids(
            prompts, max_new_tokens=max_new_tokens, temperature=temperature, progress=progress
        )
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    results: list[list[int]] = [[] for _ in prompts]
    device = next(model.parameters()).device
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    sampling = {"temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {}
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(prompts), desc=progress, disable=progress is None, unit="prompt")
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask = _left_padded([prompts[i] for i in chunk], pad_id)
        ids, mask = ids.to(device), mask.to(device)
        width = ids.shape[1]
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
            do_sample=temperature > 0,
            use_cache=True,
            **sampling,
        )
        for row, i in enumerate(chunk):
            tokens = out[row, width:].tolist()
            length = next((n + 1 for n, t in enumerate(tokens) if t == eos_id), len(tokens))
            results[i] = tokens[:length]
        bar.update(len(chunk))
    bar.close()
    model.train(was_training)
    return results


def _left_padded(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, tokens in enumerate(prompts):
        ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
        mask[row, width - len(tokens) :] = 1
    return ids, mask


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
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    outputs = generate_ids(
        model,
        tokenizer,
        encoded,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        batch_size=batch_size,
        progress=progress,
    )
    return [
        Completion(text=tokenizer.decode(out, skip_special_tokens=True), prompt_tokens=len(ids), new_tokens=len(out))
        for ids, out in zip(encoded, outputs, strict=True)
    ]


def generate_chat(
    model: Any,
    tokenizer: Any,
    conversations: Iterable[list[dict[str, str]]],
    **kwargs: Any,
) -> list[Completion]:
    prompts = [render_prompt(tokenizer, messages) for messages in conversations]
    return generate_texts(model, tokenizer, prompts, **kwargs)
