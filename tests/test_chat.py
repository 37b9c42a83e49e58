"""The training template renders what the model's own template renders, and marks only trained assistant turns."""

from __future__ import annotations

import pytest

from affine.chat import TemplateError, training_template

MESSAGES = [
    {"role": "user", "content": "instructions"},
    {"role": "assistant", "content": "OK", "loss": False},
    {"role": "user", "content": "observation"},
    {"role": "assistant", "content": "Thought:\nGo.\n\nAction:\nlook"},
]


@pytest.fixture(scope="module")
def original_tokenizer():
    """The embedded SmolLM2 tokenizer with the chat template it ships (no generation markers)."""
    from transformers import AutoTokenizer

    from affine.model import _from_pretrained, resolve

    spec = "embedded:smollm2-135m-instruct"
    tokenizer = _from_pretrained(AutoTokenizer, resolve(spec), spec)
    assert "{% generation %}" not in tokenizer.chat_template
    return tokenizer


@pytest.mark.parametrize("prompt", [False, True])
def test_rendering_is_byte_identical_to_the_shipped_template(original_tokenizer, prompt):
    tok = original_tokenizer
    shipped = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=prompt)
    ours = tok.apply_chat_template(
        MESSAGES, tokenize=False, add_generation_prompt=prompt, chat_template=training_template(tok.chat_template)
    )
    assert ours == shipped


def test_only_assistant_turns_without_loss_false_are_marked(original_tokenizer):
    tok = original_tokenizer
    out = tok.apply_chat_template(
        MESSAGES,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        chat_template=training_template(tok.chat_template),
    )
    marked = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(marked) == "Thought:\nGo.\n\nAction:\nlook<|im_end|>"


def test_non_chatml_template_without_markers_is_refused():
    with pytest.raises(TemplateError, match="generation"):
        training_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    marked = "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}"
    assert training_template(marked) == marked
