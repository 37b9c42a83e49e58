"""One chat template for training and inference.

TRL's ``assistant_only_loss`` needs ``{% generation %}`` markers to know which tokens are the assistant's; SmolLM2's
shipped ChatML template has none, and TRL refuses to patch it.  We rewrite a ChatML template *with* the markers that
renders byte-identically to the original (same default system line), so the prompt the model is trained on is exactly
the prompt it sees at evaluation.  Templates that already carry markers are kept as they are.

An assistant message with ``"loss": false`` (AgentTraj's own flag, which AgentGym sets on the "OK" that acknowledges
the instructions) is rendered the same but left outside the markers, so it is context, not a target: trained on, a
135M model learns to answer every observation "OK".  Templates we keep as they are ignore the flag.
"""

from __future__ import annotations

import re
from typing import Any

from affine.errors import StageError

_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\\n|\n)(.*?)<\|im_end\|>", re.DOTALL)

_CHATML = (
    "{%- for message in messages %}"
    "{%- if loop.first and messages[0]['role'] != 'system' %}{{ SYSTEM }}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['loss'] is not false %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{%- else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


class TemplateError(StageError, ValueError):
    """A chat template or conversation this code cannot use; the message says why, in one line."""


def training_template(original: str | None) -> str:
    """A generation-marked equivalent of ``original`` (ChatML only; others must already carry markers)."""
    if original and "{% generation %}" in original:
        return original
    if not original or "<|im_start|>" not in original:
        raise TemplateError(
            "the model's chat template has no {% generation %} markers and is not ChatML; "
            "give the tokenizer a template with generation markers for assistant-only loss"
        )
    match = _DEFAULT_SYSTEM.search(original)
    system = repr(f"<|im_start|>system\n{match.group(1)}<|im_end|>\n") if match else "''"
    return _CHATML.replace("SYSTEM", system)


def install_training_template(tokenizer: Any) -> None:
    tokenizer.chat_template = training_template(tokenizer.chat_template)


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The text the model continues: the conversation so far plus the assistant header."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
