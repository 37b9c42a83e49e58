"""affine.sft.compact_lm_head: TRL's fused LM head over the labelled positions only, on the CPU, same loss and grads."""

import pytest
import torch

from affine.config import parse_params

MESSAGES = [
    [
        {"role": "user", "content": "instructions and a long observation " * 6},
        {"role": "assistant", "content": "Thought:\nGo.\n\nAction:\nlook"},
        {"role": "user", "content": "observation two"},
        {"role": "assistant", "content": "Action:\ninventory"},
    ],
    [{"role": "user", "content": "short"}, {"role": "assistant", "content": "yes"}],
]


def _trainer(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from trl import SFTTrainer

    from affine.model import load_model
    from affine.sft import lora_config, sft_config

    params = parse_params({"base": {"seed": 0}, "sft": {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}})
    torch.manual_seed(0)  # the LoRA B matrices start at zero; A is seeded
    model, tok = load_model(tiny_model_dir)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(params.sft, 0, tmp_path, has_cuda=False),
        train_dataset=Dataset.from_list([{"messages": m} for m in MESSAGES]),
        eval_dataset=Dataset.from_list([{"messages": m} for m in MESSAGES]),
        processing_class=tok,
        peft_config=lora_config(params.sft),
    )
    # a nonzero B, so the LoRA changes the logits and both its matrices get gradients
    for name, weight in trainer.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.02, generator=torch.Generator().manual_seed(len(name)))
    return trainer


def _loss_and_grads(trainer, rows_seen: list[int], monkeypatch):
    import trl.trainer.utils as trl_utils

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(MESSAGES))])
    original = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden, *rest):
        rows_seen.append(hidden.shape[0])
        return original(hidden, *rest)

    with monkeypatch.context() as patch:
        patch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)
        trainer.model.train()
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, dict(batch))
        loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    return loss.detach(), grads, labelled, batch["input_ids"][:, 1:].numel()


def test_compact_head_scores_only_labelled_rows_with_the_same_loss_and_grads(tiny_model_dir, tmp_path, monkeypatch):
    import trl.trainer.utils as trl_utils

    from affine.sft import compact_lm_head

    trainer = _trainer(tiny_model_dir, tmp_path)
    full_rows: list[int] = []
    full_loss, full_grads, labelled, positions = _loss_and_grads(trainer, full_rows, monkeypatch)
    hook = trl_utils._use_triton
    with compact_lm_head() as switched:
        compact_rows: list[int] = []
        compact_loss, compact_grads, _, _ = _loss_and_grads(trainer, compact_rows, monkeypatch)
    assert switched
    assert trl_utils._use_triton is hook  # restored: nothing leaks past the block
    assert full_rows == [positions]  # without it, TRL projects every (shifted) position on the CPU
    assert compact_rows == [labelled] and 0 < labelled < positions / 2
    torch.testing.assert_close(compact_loss, full_loss, rtol=1e-6, atol=1e-6)
    assert full_grads.keys() == compact_grads.keys() and any("lora_A" in n for n in full_grads)
    for name, grad in full_grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(compact_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_compact_head_restores_the_hook_when_training_fails():
    import trl.trainer.utils as trl_utils

    from affine.sft import compact_lm_head

    hook = trl_utils._use_triton
    with pytest.raises(RuntimeError, match="boom"), compact_lm_head():
        assert trl_utils._use_triton(torch.device("cpu"))
        raise RuntimeError("boom")
    assert trl_utils._use_triton is hook and not hook(torch.device("cpu"))


def test_compact_head_without_the_hook_trains_as_before_with_a_warning(monkeypatch, caplog):
    import trl.trainer.utils as trl_utils

    from affine.sft import compact_lm_head

    monkeypatch.delattr(trl_utils, "_use_triton")
    with caplog.at_level("WARNING", logger="affine.sft"), compact_lm_head() as switched:
        assert not switched
    assert "scores every position" in caplog.text
    assert not hasattr(trl_utils, "_use_triton")
