"""A decode-step attention for CPU generation, plugged in through transformers' ``AttentionInterface``.

Why: in a batched decode step on a CPU (one new token per row, a padded KV cache of a few hundred columns) torch's
``scaled_dot_product_attention`` runs its flash kernel, which is tuned for long queries: with bfloat16 it took 1.16 ms
per layer call (32 rows x 9 heads x 330 keys, 2 cores) where two matmuls and a float32 softmax take ~0.4 ms, and
attention was a third of a batch-32 decode step.  For one query token grouped-query attention needs no
``repeat_kv`` either: the query heads that share a key/value head become that head's "query rows".

Only CPU decode steps take this path.  Prefill (several query tokens), training forwards and every other device go
to transformers' own ``sdpa`` function unchanged, with the very mask ``sdpa`` gets, so nothing but the kernel of the
decode step differs.  Models whose attention is not ``sdpa`` (eager, flash, flex) are left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

NAME = "affine_cpu_decode"


def cpu_decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of one query token per row as two matmuls; anything else goes to ``sdpa``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.shape[2] != 1 or query.device.type != "cpu":
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    batch, heads, _, dim = query.shape
    grouped = query.reshape(batch, key.shape[1], heads // key.shape[1], dim)  # query heads h*g..h*g+g-1 share kv head h
    scores = torch.matmul(grouped, key.transpose(2, 3)) * (dim**-0.5 if scaling is None else scaling)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    output = torch.matmul(weights, value)  # (batch, kv heads, group, dim)
    return output.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, cpu_decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


@contextlib.contextmanager
def fast_decode(model: Any) -> Iterator[None]:
    """Run ``model``'s decode steps through :func:`cpu_decode_attention` while inside; ``sdpa`` models only."""
    if getattr(getattr(model, "config", None), "_attn_implementation", None) != "sdpa":
        yield
        return
    _register()
    model.set_attn_implementation(NAME)
    try:
        yield
    finally:
        model.set_attn_implementation("sdpa")
