"""The CPU decode-step attention must compute what transformers' sdpa computes, and only be used where it should."""

import pytest
import torch

from affine.attention import NAME, cpu_decode_attention, fast_decode
from affine.generation import _left_padded, generate_ids


def _step_logits(model, tokenizer, steps=3):
    ids, mask = _left_padded([[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]], tokenizer.pad_token_id)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=steps,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        return_dict_in_generate=True,
        output_logits=True,
    )
    return out.sequences, torch.stack(out.logits)


def test_decode_steps_match_sdpa_with_left_padding(tiny_model, tokenizer, monkeypatch):
    import affine.attention

    calls = []

    def spy(module, query, *args, **kwargs):
        calls.append(query.shape[2])
        return cpu_decode_attention(module, query, *args, **kwargs)

    monkeypatch.setattr(affine.attention, "cpu_decode_attention", spy)
    tiny_model.eval()
    with torch.inference_mode():
        reference_ids, reference = _step_logits(tiny_model, tokenizer)
        with fast_decode(tiny_model):
            assert tiny_model.config._attn_implementation == NAME
            ids, logits = _step_logits(tiny_model, tokenizer)
    assert tiny_model.config._attn_implementation == "sdpa"
    assert calls.count(1) == 2 * 2  # two decode steps (the first token comes from the prefill) x two layers
    assert torch.equal(ids, reference_ids)
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)


def test_grouped_query_heads_map_to_their_own_key_value_head():
    """Query heads 2h and 2h+1 read kv head h (transformers' repeat_kv order); checked against plain sdpa."""
    torch.manual_seed(0)
    module = torch.nn.Module()
    module.num_key_value_groups = 2
    query, key, value = torch.randn(3, 4, 1, 8), torch.randn(3, 2, 5, 8), torch.randn(3, 2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=torch.bool)[:, None, None, :]
    out, _ = cpu_decode_attention(module, query, key, value, mask, scaling=0.3)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(2, dim=1), value.repeat_interleave(2, dim=1), attn_mask=mask, scale=0.3
    )
    torch.testing.assert_close(out, expected.transpose(1, 2), atol=1e-6, rtol=1e-6)
    float_mask = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(cpu_decode_attention(module, query, key, value, float_mask, scaling=0.3)[0], out)


def test_generation_restores_the_model_attention_even_on_error(tiny_model, tokenizer):
    tiny_model.eval()
    with pytest.raises(RuntimeError, match="boom"), fast_decode(tiny_model):
        raise RuntimeError("boom")
    assert tiny_model.config._attn_implementation == "sdpa"
    generate_ids(tiny_model, tokenizer, [[5, 6, 7]], max_new_tokens=2, temperature=0.0, batch_size=1)
    assert tiny_model.config._attn_implementation == "sdpa"


def test_non_sdpa_models_are_left_alone(tiny_model):
    tiny_model.set_attn_implementation("eager")
    with fast_decode(tiny_model):
        assert tiny_model.config._attn_implementation == "eager"
    assert tiny_model.config._attn_implementation == "eager"
