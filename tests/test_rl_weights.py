"""The merged weights RL hands vLLM each iteration (:func:`affine.rl.loop.merged_weights`), without an engine."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_model
from peft import LoraConfig, get_peft_model

from affine.model import ModelError
from affine.rl.loop import merged_weights


def lora_policy(vocab_size: int = 64):
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    policy = get_peft_model(build_tiny_model(vocab_size, 0), config)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, weight in policy.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)
    return policy


def test_merged_weights_equal_peft_merge_bit_for_bit_and_leave_the_policy_alone() -> None:
    policy = lora_policy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    merged = merged_weights(policy)
    assert all(torch.equal(v, policy.state_dict()[k]) for k, v in before.items())  # untouched, still unmerged
    reference = policy.merge_and_unload().state_dict()
    assert sorted(merged) == sorted(reference)  # the whole checkpoint under HF names, no LoRA tensors
    for name, weight in merged.items():
        assert torch.equal(weight, reference[name]), name
    base = {k.removeprefix("base_model.model.").replace(".base_layer", ""): v for k, v in before.items()}
    changed = {name for name, weight in merged.items() if not torch.equal(weight, base[name])}
    assert changed == {n for n in merged if n.endswith(("q_proj.weight", "v_proj.weight", "down_proj.weight"))}


def test_only_the_named_adapter_is_merged() -> None:
    policy = lora_policy()
    bare = {k.removeprefix("base_model.model.").replace(".base_layer", ""): v for k, v in policy.state_dict().items()}
    policy.add_adapter("reference", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    merged = merged_weights(policy, adapter="reference")  # a fresh LoRA: B = 0 leaves the base weights
    assert all(torch.equal(w, bare[name]) for name, w in merged.items())
    absent = merged_weights(policy, adapter="absent")
    assert sorted(absent) == sorted(merged) and all(torch.equal(w, bare[n]) for n, w in absent.items())


def test_a_quantized_base_is_one_clear_error(monkeypatch) -> None:
    policy = lora_policy()
    layer = policy.base_model.model.model.layers[0].self_attn.q_proj.base_layer
    monkeypatch.setattr(layer, "weight", torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.int8), requires_grad=False))
    with pytest.raises(ModelError, match="an 8/4-bit base cannot be merged"):
        merged_weights(policy)
