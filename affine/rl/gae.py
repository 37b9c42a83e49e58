"""Generalized Advantage Estimation over the tokens a policy generated.

A conversation is one token row: observation/instruction tokens (mask 0) interleaved with the model's actions
(mask 1).  Only action tokens are decision points, so GAE walks the masked positions right to left and *skips* the
observation tokens: the "next state" of an action's last token is the first token of the next action, whose value
was computed after the env's feedback was appended — the env transition happens across the skipped tokens.

Alignment (shared with :mod:`affine.rl.ppo`): ``values[b, t]`` is the value of the state in which token ``t`` is
about to be emitted, ``rewards[b, t]`` is the reward received after emitting it (non-zero only on the last token of
an action, see :mod:`affine.rollout`).

Two discounting granularities, because they mean very different things for a multi-turn agent:

* ``step_ends=None`` — every action token is an MDP step (TRL-style token-level PPO).  ``gamma`` then discounts per
  *token*: with 0.99 a reward ten 128-token turns away is worth 0.99**1280 ≈ 3e-6, i.e. nothing.
* ``step_ends`` given (the last token of each action) — ``gamma`` and ``lam`` apply only when crossing from one
  action to the next; inside an action tokens chain with factor 1.  This is turn-level GAE with a per-token
  baseline: the recipe's ``gamma: 0.99`` then means 0.99 per env step, as it does in AgentGym-RL / verl-agent.

Episode ends: a *terminal* end (the env said done) bootstraps with 0; a *truncated* end (the engine's turn limit cut
a live episode) bootstraps with ``last_values`` — the value of the state after the last observation.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float,
    lam: float,
    last_values: torch.Tensor | None = None,
    terminal: torch.Tensor | None = None,
    step_ends: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns, both ``(B, T)`` and zero outside ``mask``.

    ``rewards``, ``values``, ``mask`` (and ``step_ends``) are ``(B, T)``; ``last_values`` and ``terminal`` are
    ``(B,)``.  Missing ``terminal`` means every row ended terminally; missing ``last_values`` means zeros.
    Returns are ``advantages + values`` (the value head's regression target).
    """
    if rewards.shape != values.shape or rewards.shape != mask.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)}, values {tuple(values.shape)}, mask {tuple(mask.shape)}")
    if rewards.dim() != 2:
        raise ValueError(f"expected (batch, time) tensors, got {rewards.dim()} dims")
    batch, length = rewards.shape
    rewards, values = rewards.float(), values.float()
    mask = mask.bool()
    ends = mask if step_ends is None else step_ends.bool() & mask
    if terminal is None:
        terminal = torch.ones(batch, dtype=torch.bool, device=rewards.device)
    if last_values is None:
        last_values = torch.zeros(batch, device=rewards.device)
    next_value = torch.where(terminal.bool(), torch.zeros_like(last_values), last_values.float())
    next_adv = torch.zeros(batch, device=rewards.device)
    advantages = torch.zeros_like(rewards)
    one = torch.ones(batch, device=rewards.device)
    for t in reversed(range(length)):
        live = mask[:, t]
        discount = torch.where(ends[:, t], one * gamma, one)
        trace = torch.where(ends[:, t], one * gamma * lam, one)
        delta = rewards[:, t] + discount * next_value - values[:, t]
        adv = delta + trace * next_adv
        advantages[:, t] = torch.where(live, adv, torch.zeros_like(adv))
        next_value = torch.where(live, values[:, t], next_value)
        next_adv = torch.where(live, adv, next_adv)
    returns = (advantages + values) * mask
    return advantages, returns
