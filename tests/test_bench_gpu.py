"""The GPU bench's FLOP count (its MFU figures rest on it) and its full-length rows, checked on a tiny Qwen3."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_gpu  # noqa: E402


def test_dense_flops_match_the_models_matmul_parameters():
    model = bench_gpu.build_model("tiny", seed=0, device="cpu")
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    # one token, no attention term: forward 2N, LoRA backward 2N (input gradients only), recompute +2N
    flops, with_recompute = bench_gpu.model_flops(model.config, tokens=1, squares=0)
    per_layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128  # q, o; k, v (2 kv heads of 16); gate, up, down
    assert matmul == 2 * per_layer + 49152 * 64  # + lm_head (tied to the embedding, still a matmul)
    assert flops == 4 * matmul
    assert with_recompute == 6 * matmul


def test_attention_flops_grow_with_squared_lengths():
    config = bench_gpu.build_model("tiny", seed=0, device="cpu").config
    base, _ = bench_gpu.model_flops(config, tokens=10, squares=0)
    full, recomputed = bench_gpu.model_flops(config, tokens=10, squares=100)
    per_square = 2 * config.num_hidden_layers * config.num_attention_heads * config.head_dim  # causal forward
    assert full - base == 3 * per_square * 100  # forward + twice that backward
    assert recomputed - 1.5 * base == 4 * per_square * 100


def test_long_rows_reach_the_length_and_keep_alternating_roles(tokenizer):
    rows = [
        {"messages": [{"role": "user", "content": f"question {i} " * 20}, {"role": "assistant", "content": "ok " * 20}]}
        for i in range(30)
    ]
    joined = bench_gpu.long_rows(rows, tokenizer, 256)
    assert joined
    for row in joined:
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= 256
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * (len(row["messages"]) // 2)
