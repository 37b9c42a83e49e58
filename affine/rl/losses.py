"""The PPO / GRPO formulas as pure tensor functions, each unit-tested by hand in ``tests/test_rl_math.py``.

Every function takes a ``mask`` (1 on generated tokens) because a batch row mixes the model's actions with
observation and padding tokens that must not count: means are *masked* means over action tokens, so a long
observation never dilutes a loss and padding never adds to it.
"""

from __future__ import annotations

import math

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` is set (0 when nothing is set, instead of NaN)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Population variance of ``x`` over ``mask``."""
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8, shift_mean: bool = True) -> torch.Tensor:
    """Advantage normalisation: zero mean, unit variance over the masked entries; zero elsewhere.

    Statistics come from action tokens only (observations would otherwise pull the mean toward 0).
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(x.dtype)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate ``-min(r·A, clip(r, 1±ε)·A)`` (masked mean) and the clip fraction.

    The clip fraction is the share of action tokens where the clipped term is the one in force (its loss is
    strictly larger), i.e. where the gradient was cut — the number to watch when tuning ``clip_range``.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_frac


def value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip_range: float | None = None,
) -> torch.Tensor:
    """Mean squared error to the GAE returns; with ``clip_range`` the PPO2 pessimistic clipped variant.

    Clipping keeps a value update within ``±clip_range`` of the rollout-time value unless that makes the error
    smaller — useful when returns are large and the head would otherwise jump.
    """
    error = (values - returns) ** 2
    if clip_range is not None:
        if old_values is None:
            raise ValueError("value clipping needs old_values")
        clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
        error = torch.maximum(error, (clipped - returns) ** 2)
    return masked_mean(error, mask)


def entropy_from_logits(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token entropy ``logsumexp(z) - Σ softmax(z)·z`` over the vocabulary; masked mean if ``mask`` given."""
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    entropy = torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)
    return entropy if mask is None else masked_mean(entropy, mask)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[token]`` per position without materialising the whole log-softmax twice."""
    logits = logits.float()
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def approx_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Sample estimate of KL(π‖ref) from tokens drawn from π (Schulman's estimators), masked mean.

    ``k3 = (r - 1) - log r`` with ``r = ref/π`` is unbiased and never negative, so it works as a loss term (the
    GRPO KL penalty) and as a logged metric; ``k1 = -log r`` is the plain unbiased, noisier one.
    """
    log_ratio = ref_logprobs - logprobs
    if kind == "k3":
        kl = torch.exp(log_ratio) - 1.0 - log_ratio
    elif kind == "k1":
        kl = -log_ratio
    else:
        raise ValueError(f"unknown KL estimator {kind!r}: use 'k1' or 'k3'")
    return masked_mean(kl, mask)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(R - V) / Var(R)``: 1 is a perfect critic, 0 no better than a constant, < 0 worse; NaN if Var(R)=0."""
    var_returns = masked_var(returns.float(), mask)
    if var_returns.item() == 0.0:
        return math.nan
    return (1.0 - masked_var(returns.float() - values.float(), mask) / var_returns).item()


def grpo_advantages(rewards: torch.Tensor, groups: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Group-relative advantages ``(r - mean_g) / (std_g + eps)`` per episode (GRPO, DeepSeekMath).

    ``rewards`` and ``groups`` are ``(N,)``: one return per episode and the id of the task it sampled.  The std is
    the unbiased sample std (as TRL's GRPOTrainer); a group of one, or whose episodes all scored the same, carries
    no ranking signal and gets advantage 0.
    """
    advantages = torch.zeros_like(rewards, dtype=torch.float32)
    for group in torch.unique(groups):
        members = groups == group
        r = rewards[members].float()
        if r.numel() < 2:
            continue
        advantages[members] = (r - r.mean()) / (r.std() + eps)
    return advantages


def spread(per_episode: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Give every action token of episode ``b`` the value ``per_episode[b]``: ``(N,)`` × ``(N, T)`` → ``(N, T)``."""
    return per_episode.float().unsqueeze(-1) * mask.float()
