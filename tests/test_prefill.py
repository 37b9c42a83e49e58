"""Grouped prefill with shared-prefix reuse must compute exactly what plain batched generation computes (fp32)."""

import torch

from affine.generation import generate_ids
from affine.prefill import cache_name, layout

INSTRUCTIONS = list(range(100, 140))  # a 40-token "instruction" shared by a family of prompts


def _prompts():
    family = [INSTRUCTIONS + [7, 8, 9][: k + 1] + [200 + k] * k for k in range(3)]
    others = [[5, 6, 7, 8, 9, 10], [11], list(range(300, 330))]
    return family + others + [INSTRUCTIONS + [1]] * 2  # two identical prompts, as GRPO samples them


def test_layout_keeps_every_prompt_and_ends_rows_together():
    prompts = _prompts()
    plan = layout(prompts, pad_id=0, min_shared=32)
    assert sorted(plan.order) == list(range(len(prompts)))
    for row, index in enumerate(plan.order):
        assert plan.ids[row][plan.mask[row] == 1].tolist() == prompts[index]
        assert plan.mask[row, -1] == 1  # the last prompt token sits in the last column for every row
    shared = sorted(p for _, _, p in plan.families)
    assert shared[-1] == 40  # the five rows that start with INSTRUCTIONS share it
    assert sum(end - first for first, end, p in plan.families if p == 40) == 5
    assert all(p == 0 for _, _, p in plan.families if p != 40)
    assert plan.prefix_width == 40


def test_short_common_prefixes_are_not_shared():
    plan = layout([[1, 2, 3, 4], [1, 2, 3, 5]], pad_id=0, min_shared=32)
    assert [p for _, _, p in plan.families] == [0, 0]
    assert plan.ids.shape == (2, 4)


def test_shared_prefix_generation_equals_plain_generation(tiny_model, tokenizer, monkeypatch):
    tiny_model.eval()
    prompts = _prompts()
    kwargs = {"max_new_tokens": 6, "temperature": 0.0, "batch_size": len(prompts)}
    plain = generate_ids(tiny_model, tokenizer, prompts, **kwargs)
    calls = []
    forward = tiny_model.forward

    def counting(*args, **kw):
        calls.append(tuple(kw["input_ids"].shape))
        return forward(*args, **kw)

    monkeypatch.setattr(tiny_model, "forward", counting)
    shared = generate_ids(tiny_model, tokenizer, prompts, prefill_tokens=64, **kwargs)
    assert shared == plain
    assert calls.count((1, 40)) == 1  # the instructions ran once for the five rows that share them
    # sampling stays seeded
    sample = {**kwargs, "temperature": 1.0}
    torch.manual_seed(3)
    a = generate_ids(tiny_model, tokenizer, prompts, prefill_tokens=64, **sample)
    torch.manual_seed(3)
    assert generate_ids(tiny_model, tokenizer, prompts, prefill_tokens=64, **sample) == a


def test_shared_prefix_across_batches_and_small_groups(tiny_model, tokenizer):
    tiny_model.eval()
    prompts = _prompts() * 2
    kwargs = {"max_new_tokens": 4, "temperature": 0.0}
    plain = generate_ids(tiny_model, tokenizer, prompts, batch_size=5, **kwargs)
    assert generate_ids(tiny_model, tokenizer, prompts, batch_size=5, prefill_tokens=3, **kwargs) == plain
    assert generate_ids(tiny_model, tokenizer, prompts, batch_size=16, prefill_tokens=3, **kwargs) == plain


def test_prefilled_cache_equals_each_prompt_run_alone(tiny_model):
    """Keys and values on every real column match the prompt's own unpadded forward: positions and prefixes right."""
    from affine.prefill import prefill

    tiny_model.eval()
    prompts = _prompts()
    for max_tokens in (3, 64, 1000):
        plan = layout(prompts, pad_id=0, min_shared=32)
        with torch.inference_mode():
            cache = prefill(tiny_model, plan, max_tokens, room=3)
            for row, index in enumerate(plan.order):
                tokens = prompts[index]
                if len(tokens) < 2:
                    continue
                alone = getattr(tiny_model(input_ids=torch.tensor([tokens[:-1]]), use_cache=True), cache_name())
                real = plan.mask[row, :-1] == 1
                last = real.shape[0]
                for mine, reference in zip(cache.layers, alone.layers, strict=True):
                    assert mine.keys.shape[2] == last + 3  # room for the decode steps, written in place
                    keys, values = mine.keys[row][:, :last], mine.values[row][:, :last]
                    torch.testing.assert_close(keys[:, real], reference.keys[0], atol=1e-5, rtol=1e-4)
                    torch.testing.assert_close(values[:, real], reference.values[0], atol=1e-5, rtol=1e-4)


def test_generate_continues_the_prefilled_cache_with_each_prompts_own_logits(tiny_model, tokenizer):
    """The first two steps' logits from generate over the prefilled layout equal each prompt's own forward."""
    from affine.prefill import prefill

    tiny_model.eval()
    prompts = _prompts()
    plan = layout(prompts, pad_id=tokenizer.pad_token_id, min_shared=32)
    with torch.inference_mode():
        out = tiny_model.generate(
            input_ids=plan.ids,
            attention_mask=plan.mask,
            **{cache_name(): prefill(tiny_model, plan, 64, room=2)},
            max_new_tokens=2,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
        )
        for row, index in enumerate(plan.order):
            first = out.sequences[row, plan.ids.shape[1]].item()
            alone = tiny_model(input_ids=torch.tensor([prompts[index] + [first]])).logits[0, -2:]
            torch.testing.assert_close(out.logits[0][row], alone[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out.logits[1][row], alone[1], atol=1e-4, rtol=1e-4)
