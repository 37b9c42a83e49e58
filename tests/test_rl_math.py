"""Every RL formula against numbers worked out by hand (comments show the arithmetic)."""

from __future__ import annotations

import math

import pytest
import torch

from affine.rl.gae import gae
from affine.rl.losses import (
    approx_kl,
    entropy_from_logits,
    explained_variance,
    grpo_advantages,
    masked_mean,
    masked_whiten,
    policy_loss,
    spread,
    token_logprobs,
    value_loss,
)

T = torch.tensor


def close(actual: torch.Tensor, expected: list, tol: float = 1e-5) -> None:
    assert torch.allclose(actual.float(), T(expected, dtype=torch.float32), atol=tol), actual


# --- GAE: rewards [0, 0, 1], values [.5, .6, .7], gamma .9, lambda .8 (gamma*lambda = .72) ---


def test_gae_terminal_end_by_hand() -> None:
    # t2: delta = 1 + 0 - .7 = .3                       A2 = .3
    # t1: delta = 0 + .9*.7 - .6 = .03                  A1 = .03 + .72*.3 = .246
    # t0: delta = 0 + .9*.6 - .5 = .04                  A0 = .04 + .72*.246 = .21712
    adv, ret = gae(T([[0.0, 0.0, 1.0]]), T([[0.5, 0.6, 0.7]]), T([[1, 1, 1]]), gamma=0.9, lam=0.8)
    close(adv, [[0.21712, 0.246, 0.3]])
    close(ret, [[0.71712, 0.846, 1.0]])


def test_gae_truncated_end_bootstraps_from_last_value() -> None:
    # t2: delta = 1 + .9*2 - .7 = 2.1; t1: .03 + .72*2.1 = 1.542; t0: .04 + .72*1.542 = 1.15024
    kwargs = {"gamma": 0.9, "lam": 0.8, "last_values": T([2.0])}
    rewards, values, mask = T([[0.0, 0.0, 1.0]]), T([[0.5, 0.6, 0.7]]), T([[1, 1, 1]])
    adv, _ = gae(rewards, values, mask, terminal=T([False]), **kwargs)
    close(adv, [[1.15024, 1.542, 2.1]])
    # the same row flagged terminal ignores last_values
    adv, _ = gae(rewards, values, mask, terminal=T([True]), **kwargs)
    close(adv, [[0.21712, 0.246, 0.3]])


def test_gae_skips_observation_tokens_and_padding() -> None:
    # actions at t0 and t3, an observation (t1, t2) between, then padding; observation values/rewards never count.
    # t3: delta = 1 - .7 = .3 ; t0: delta = .2 + .9*.7 - .5 = .33, A0 = .33 + .72*.3 = .546
    rewards = T([[0.2, 5.0, 5.0, 1.0, 7.0]])
    values = T([[0.5, 9.0, 9.0, 0.7, 3.0]])
    mask = T([[1, 0, 0, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    close(adv, [[0.546, 0.0, 0.0, 0.3, 0.0]])
    close(ret, [[1.046, 0.0, 0.0, 1.0, 0.0]])


def test_gae_turn_level_discounts_only_between_turns() -> None:
    # turn 1 = tokens 0,1 (reward .5 on 1), turn 2 = tokens 2,3 (reward 1 on 3); values .1 .2 .3 .4
    # t3 (end): 1 - .4 = .6                 t2 (inside): 0 + .4 - .3 = .1, A2 = .1 + .6 = .7  (= 1 - .3)
    # t1 (end): .5 + .9*.3 - .2 = .57, A1 = .57 + .72*.7 = 1.074       t0: 0 + .2 - .1 + 1.074 = 1.174
    adv, _ = gae(
        T([[0.0, 0.5, 0.0, 1.0]]),
        T([[0.1, 0.2, 0.3, 0.4]]),
        T([[1, 1, 1, 1]]),
        gamma=0.9,
        lam=0.8,
        step_ends=T([[0, 1, 0, 1]]),
    )
    close(adv, [[1.174, 1.074, 0.7, 0.6]])


def test_gae_rows_are_independent() -> None:
    rows = gae(
        T([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
        T([[0.5, 0.6, 0.7], [0.3, 0.0, 0.0]]),
        T([[1, 1, 1], [1, 0, 0]]),
        gamma=0.9,
        lam=0.8,
    )[0]
    close(rows, [[0.21712, 0.246, 0.3], [0.7, 0.0, 0.0]])


def test_gae_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        gae(torch.zeros(1, 3), torch.zeros(1, 2), torch.ones(1, 3), gamma=1.0, lam=1.0)


# --- losses ---


def test_clipped_surrogate_and_clip_fraction_on_known_ratios() -> None:
    ratios = T([[1.5, 0.5, 1.0, 1.1, 0.5, 50.0]])
    advantages = T([[1.0, 1.0, -1.0, -1.0, -1.0, 1.0]])
    mask = T([[1, 1, 1, 1, 1, 0]])  # the wild last ratio is masked out
    logprobs = torch.log(ratios).requires_grad_()
    # per token max(-A r, -A clip(r, .8, 1.2)):
    #   r=1.5 A=+1: max(-1.5, -1.2) = -1.2 (clipped)   r=0.5 A=+1: max(-0.5, -0.8) = -0.5
    #   r=1.0 A=-1: 1.0                                r=1.1 A=-1: max(1.1, 1.1) = 1.1
    #   r=0.5 A=-1: max(0.5, 0.8) = 0.8 (clipped)      mean = 1.2 / 5 = .24, clip fraction 2/5
    loss, clip_frac = policy_loss(logprobs, torch.zeros_like(ratios), advantages, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(0.24)
    assert clip_frac.item() == pytest.approx(0.4)
    loss.backward()
    # clipped tokens get no gradient; unclipped ones get -A * r / n
    close(logprobs.grad, [[0.0, -0.1, 0.2, 0.22, 0.0, 0.0]])


def test_value_loss_plain_and_clipped() -> None:
    mask = T([[1, 1, 0]])
    assert value_loss(T([[1.0, 2.0, 9.0]]), T([[0.0, 0.0, 0.0]]), mask).item() == pytest.approx(2.5)
    # value jumped 0 -> 2 onto its target 2; clipped to .5 its error is 2.25, the pessimistic max wins
    loss = value_loss(T([[2.0]]), T([[2.0]]), T([[1]]), old_values=T([[0.0]]), clip_range=0.5)
    assert loss.item() == pytest.approx(2.25)
    with pytest.raises(ValueError):
        value_loss(T([[2.0]]), T([[2.0]]), T([[1]]), clip_range=0.5)


def test_entropy_from_logits() -> None:
    logits = T([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]])
    close(entropy_from_logits(logits), [[math.log(4), 0.0]])
    assert entropy_from_logits(logits, T([[1, 0]])).item() == pytest.approx(math.log(4))
    # two equally likely tokens out of three (third at -inf-ish): log 2
    assert entropy_from_logits(T([1.0, 1.0, -1e4])).item() == pytest.approx(math.log(2), abs=1e-5)


def test_token_logprobs_match_log_softmax() -> None:
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0))
    tokens = T([[1, 6, 0], [3, 3, 2]])
    expected = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(token_logprobs(logits, tokens), expected, atol=1e-6)


def test_approx_kl_estimators() -> None:
    mask = T([[1, 1]])
    logp = T([[0.0, 0.0]])
    ref = torch.log(T([[0.5, 1.0]]))
    # k3 per token: (r - 1) - log r with r = ref/pi: (.5 - 1 + log 2) = .193147 and 0; mean .0965736
    assert approx_kl(logp, ref, mask).item() == pytest.approx((math.log(2) - 0.5) / 2)
    assert approx_kl(logp, ref, mask, kind="k1").item() == pytest.approx(math.log(2) / 2)
    assert approx_kl(logp, logp, mask).item() == 0.0
    with pytest.raises(ValueError):
        approx_kl(logp, ref, mask, kind="k2")


def test_explained_variance() -> None:
    returns, mask = T([[1.0, 2.0, 3.0, 99.0]]), T([[1, 1, 1, 0]])
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(returns, 2.0), returns, mask) == pytest.approx(0.0)
    # residuals [1, 1, -1] have variance 8/9 against Var(R) = 2/3: 1 - (8/9)/(2/3) = -1/3
    assert explained_variance(T([[0.0, 1.0, 4.0, 0.0]]), returns, mask) == pytest.approx(-1 / 3)
    assert math.isnan(explained_variance(returns, T([[1.0, 1.0, 1.0, 5.0]]), mask))


def test_masked_mean_and_whitening_ignore_masked_entries() -> None:
    x, mask = T([[1.0, 2.0, 3.0, 100.0]]), T([[1, 1, 1, 0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.0)
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0
    white = masked_whiten(x, mask)
    # mean 2, population std sqrt(2/3)
    close(white, [[-1 / math.sqrt(2 / 3), 0.0, 1 / math.sqrt(2 / 3), 0.0]], tol=1e-4)
    assert masked_mean(white, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_grpo_group_relative_advantages() -> None:
    rewards = T([1.0, 0.0, 1.0, 1.0, 0.5, 0.5, 3.0])
    groups = T([0, 0, 0, 0, 1, 1, 2])
    # group 0: mean .75, unbiased std sqrt((3*.0625 + .5625)/3) = .5 -> [.5, -1.5, .5, .5]
    # group 1: all equal -> 0; group 2: a single episode -> 0
    close(grpo_advantages(rewards, groups), [0.5, -1.5, 0.5, 0.5, 0.0, 0.0, 0.0], tol=1e-4)
    mask = T([[0, 1, 1], [1, 0, 0]])
    close(spread(T([2.0, -1.0]), mask), [[0.0, 2.0, 2.0], [-1.0, 0.0, 0.0]])
