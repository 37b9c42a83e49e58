"""Custom reward functions, named in ``params.yaml`` as ``rl.reward_fn: "module:function"``.

The rollout engine calls the function once per env step, after the env has produced its own shaped reward (which
already carries the recipe's progress bonuses and failure penalties from the env's ``Shaping``)::

    fn(env_name: str, messages: list[dict], step_reward: float, info: dict) -> float

* ``env_name``    — the registry name, e.g. ``"agentgym:webshop"`` or ``"affine:sat"``;
* ``messages``    — the conversation so far, ending with the assistant reply being rewarded;
* ``step_reward`` — the env's shaped reward for this step (a single-turn task's score);
* ``info``        — the step's info: ``score`` (the real score so far), ``done`` for multi-turn envs plus the env's
  own keys; ``challenge`` for single-turn tasks.

The return value replaces ``step_reward`` for training; the real score that metrics report is never changed.  A
function here must be pure and cheap: it runs inside the rollout loop for every episode and turn.
"""

from __future__ import annotations

import importlib
from typing import Any

from affine.rollout import RewardFn

FORMAT_BONUS = 0.05


def react_format(env_name: str, messages: list[dict[str, str]], step_reward: float, info: dict[str, Any]) -> float:
    """Example: a small bonus for AgentGym replies in the ReAct shape (``Thought:`` … ``Action:``).

    Early in RL a weak policy's replies are often unparseable; the env already penalises those, this adds a positive
    nudge toward the format the parser reads.  Single-turn tasks (``affine:*``) are left as they are.
    """
    if not env_name.startswith("agentgym:"):
        return step_reward
    reply = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
    shaped = "Thought:" in reply and "Action:" in reply.rsplit("Thought:", 1)[-1]
    return step_reward + (FORMAT_BONUS if shaped else 0.0)


def load_reward_fn(path: str | None) -> RewardFn | None:
    """Resolve ``"package.module:function"``; None stays None (the env's own shaped reward is used)."""
    if not path:
        return None
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"rl.reward_fn must look like 'package.module:function', got {path!r}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"rl.reward_fn {path!r} cannot be imported: {exc}") from exc
    if not callable(fn):
        raise ValueError(f"rl.reward_fn {path!r} is not callable")
    return fn
