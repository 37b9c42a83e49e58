"""Shared fixtures: the SmolLM2 tokenizer (extracted once from the embedded GGUF) and a tiny random-init Llama.

Unit tests never touch the real 135M weights: a 2-layer, 64-wide model with the real tokenizer exercises every code
path (chat template, masking, generation, LoRA) in milliseconds.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from affine.model import load_tokenizer

    tokenizer = load_tokenizer("embedded:smollm2-135m-instruct")
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: str):
    from affine.model import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def build_tiny_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    return LlamaForCausalLM(config)


@pytest.fixture
def tiny_model(tokenizer):
    return build_tiny_model(len(tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> str:
    """A saved tiny checkpoint + tokenizer: what stages load through affine.model.load_model."""
    folder = tmp_path_factory.mktemp("tiny_model")
    build_tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
