"""rl.gradient_checkpointing and rl.bf16: the update really recomputes activations, gives the same gradients, and
keeps dropout off (the first epoch's ratio must be exactly 1)."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_model
from peft import LoraConfig, get_peft_model

from affine.rl import actor as actor_module
from affine.rl.actor import ActorCritic, autocast_dtype, without_dropout
from affine.rl.value_head import ValueHead


def lora_actor(vocab: int, checkpointing: bool, autocast: torch.dtype | None = None) -> ActorCritic:
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.5, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    policy = get_peft_model(build_tiny_model(vocab), config)
    torch.manual_seed(1)
    for name, weight in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.1)  # non-zero B: the adapter's gradient path is exercised
    if checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    head = ValueHead(policy.config.hidden_size, 8)
    torch.nn.init.normal_(head.net[2].weight)
    return without_dropout(ActorCritic(policy, head, autocast))


def batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (2, 24), generator=generator)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 8:12] = mask[:, 18:24] = True
    return ids, torch.ones_like(ids), mask


def step(model: ActorCritic, data) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logprobs, entropy, values, _ = model(*data, 0.7)
    (logprobs.sum() + values.sum() + entropy).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    return logprobs.detach(), grads


def count_layer_forwards(model: ActorCritic) -> list[int]:
    """Calls of layer 0's MLP ``forward`` (module hooks do not fire on torch's recompute, so wrap the method)."""
    calls, mlp = [0], model.policy.base_model.model.model.layers[0].mlp
    original = mlp.forward

    def counted(*args: object, **kwargs: object) -> torch.Tensor:
        calls[0] += 1
        return original(*args, **kwargs)

    mlp.forward = counted
    return calls


def test_checkpointing_recomputes_and_gives_the_same_gradients(tokenizer) -> None:
    vocab = len(tokenizer)
    plain, recomputed = lora_actor(vocab, False), lora_actor(vocab, True)
    data = batch(vocab)
    calls = count_layer_forwards(recomputed)
    logprobs, grads = step(plain, data)
    logprobs_ckpt, grads_ckpt = step(recomputed, data)
    assert calls[0] == 2, "the layer ran once: activations were kept, not recomputed (eval mode disables it)"
    assert torch.allclose(logprobs, logprobs_ckpt, atol=1e-6)
    assert grads.keys() == grads_ckpt.keys() and any("lora_A" in n for n in grads)
    for name in grads:
        assert torch.allclose(grads[name], grads_ckpt[name], atol=1e-5, rtol=1e-4), name


def test_dropout_stays_off_in_the_update(tokenizer) -> None:
    model = lora_actor(len(tokenizer), True)  # lora_dropout 0.5: any live dropout would change every forward
    data = batch(len(tokenizer))
    first, _ = step(model, data)
    second, _ = step(model, data)
    assert torch.equal(first, second)
    assert model.policy.training  # train mode, which recompute needs


def test_bf16_autocast_is_close_to_fp32(tokenizer) -> None:
    vocab = len(tokenizer)
    data = batch(vocab)
    fp32, _ = step(lora_actor(vocab, True), data)
    bf16, _ = step(lora_actor(vocab, True, torch.bfloat16), data)
    assert fp32.dtype == bf16.dtype == torch.float32
    mask = data[2][:, 1:]
    assert not torch.equal(fp32[:, 1:][mask], bf16[:, 1:][mask])  # autocast really ran
    assert torch.allclose(fp32[:, 1:][mask], bf16[:, 1:][mask], atol=0.1)


def test_autocast_only_where_bf16_is_native(monkeypatch) -> None:
    assert autocast_dtype(False, "cpu") is None
    monkeypatch.setattr("affine.sft.cpu_has_native_bf16", lambda: False)
    assert autocast_dtype(True, "cpu") is None
    monkeypatch.setattr("affine.sft.cpu_has_native_bf16", lambda: True)
    assert autocast_dtype(True, "cpu") is torch.bfloat16


@pytest.mark.parametrize("flag", [True, False])
def test_load_policy_applies_the_param(monkeypatch, flag) -> None:
    class Model:
        enabled = False

        def gradient_checkpointing_enable(self, **_: object) -> None:
            self.enabled = True

    monkeypatch.setattr(actor_module, "_load_policy", lambda *_: (Model(), None))
    from affine.config import parse_params

    model, _ = actor_module.load_policy(parse_params({"rl": {"gradient_checkpointing": flag}}), "x")
    assert model.enabled is flag
