"""Batched generation must give exactly what one-prompt-at-a-time generation gives (left padding done right)."""

import torch

from affine.generation import generate_chat, generate_texts


def _one_by_one(model, tokenizer, prompts, max_new_tokens):
    out = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            gen = model.generate(
                ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        tokens = gen[0, ids.shape[1] :].tolist()
        if tokenizer.eos_token_id in tokens:
            tokens = tokens[: tokens.index(tokenizer.eos_token_id) + 1]
        out.append(tokenizer.decode(tokens, skip_special_tokens=True))
    return out


def test_batched_greedy_equals_unbatched(tiny_model, tokenizer):
    tiny_model.eval()
    prompts = ["short", "a much longer prompt " * 6, "medium length prompt here", "x"]
    batched = generate_texts(tiny_model, tokenizer, prompts, max_new_tokens=8, batch_size=3)
    assert [c.text for c in batched] == _one_by_one(tiny_model, tokenizer, prompts, 8)
    assert [c.prompt_tokens for c in batched] == [
        len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts
    ]
    assert all(1 <= c.new_tokens <= 8 for c in batched)


def test_chat_prompts_and_empty_input(tiny_model, tokenizer):
    assert generate_chat(tiny_model, tokenizer, [], max_new_tokens=4) == []
    out = generate_chat(tiny_model, tokenizer, [[{"role": "user", "content": "hi"}]], max_new_tokens=4)
    assert len(out) == 1 and out[0].prompt_tokens > 5


def test_sampling_is_seeded(tiny_model, tokenizer):
    prompts = ["hello there"] * 3
    torch.manual_seed(0)
    a = [c.text for c in generate_texts(tiny_model, tokenizer, prompts, max_new_tokens=6, temperature=1.0)]
    torch.manual_seed(0)
    b = [c.text for c in generate_texts(tiny_model, tokenizer, prompts, max_new_tokens=6, temperature=1.0)]
    assert a == b


def _prefill_widths(model):
    """Record (rows, width) of every forward that is a prefill (more than one input column)."""
    calls = []
    forward = model.forward

    def counting(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[1] > 1:
            calls.append(tuple(ids.shape))
        return forward(*args, **kwargs)

    return calls, counting


def test_grouped_prefill_gives_exactly_the_same_tokens(tiny_model, tokenizer, monkeypatch):
    tiny_model.eval()
    prompts = ["x", "a much longer prompt " * 6, "short", "medium length prompt here", "y", "two words"]
    whole = generate_texts(tiny_model, tokenizer, prompts, max_new_tokens=8, batch_size=6)
    calls, counting = _prefill_widths(tiny_model)
    monkeypatch.setattr(tiny_model, "forward", counting)
    grouped = generate_texts(tiny_model, tokenizer, prompts, max_new_tokens=8, batch_size=6, prefill_tokens=8)
    assert [c.text for c in grouped] == [c.text for c in whole]
    assert [c.new_tokens for c in grouped] == [c.new_tokens for c in whole]
    # the long prompt's prefix alone, then groups of at most 8 tokens, each only as wide as its longest prefix
    longest = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    assert calls[0] == (1, longest - 1)
    assert len(calls) >= 2
    assert all(rows * width <= 8 for rows, width in calls[1:])


def test_grouped_prefill_with_one_token_prompts_and_sampling(tiny_model, tokenizer):
    tiny_model.eval()
    ids = [[5], [7], [9, 10, 11]]
    from affine.generation import generate_ids

    kwargs = {"max_new_tokens": 5, "temperature": 0.0, "batch_size": 3}
    assert generate_ids(tiny_model, tokenizer, ids, prefill_tokens=2, **kwargs) == generate_ids(
        tiny_model, tokenizer, ids, **kwargs
    )
    assert generate_ids(tiny_model, tokenizer, [[5], [7]], prefill_tokens=2, **kwargs) == generate_ids(
        tiny_model, tokenizer, [[5], [7]], **kwargs
    )
    torch.manual_seed(1)
    a = generate_ids(tiny_model, tokenizer, ids, prefill_tokens=2, **{**kwargs, "temperature": 1.0})
    torch.manual_seed(1)
    b = generate_ids(tiny_model, tokenizer, ids, prefill_tokens=2, **{**kwargs, "temperature": 1.0})
    assert a == b
