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
