"""The two environment interfaces and the registry every stage resolves env names through.

A *single-turn task* (SAT, ABD, DED) is a pure generator + scorer: ``sample(seed)`` returns a JSON-serialisable
challenge dict holding everything needed to score it, ``score(challenge, reply)`` reproduces the validator's
scoring, and ``solution(challenge)`` gives an SFT target.  Keeping the challenge a plain dict (not an object) is
what lets the collect stage write it to JSONL and the evaluate stage score it later in another process.

A *multi-turn env* (the AgentGym five) is stateful: ``reset(task_id)`` then ``step(reply)`` until ``done``.
The rollout engine treats a single-turn task as a one-step episode, so one engine serves both.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Challenge = dict[str, Any]


@runtime_checkable
class SingleTurnTask(Protocol):
    """A task scored from one reply.  ``name`` is the registry key, e.g. ``affine:sat``."""

    name: str

    def sample(self, seed: int) -> Challenge:
        """Deterministic in ``seed``; the dict has at least ``env``, ``task_id`` and ``prompt``."""
        ...

    def score(self, challenge: Challenge, reply: str) -> float:
        """The validator's score for ``reply`` (0.0 on malformed replies, never an exception)."""
        ...

    def solution(self, challenge: Challenge) -> str:
        """A reply that scores 1.0, used as the SFT target."""
        ...


@dataclass
class Step:
    """One env transition.

    ``reward`` is the recipe's shaped reward (what RL trains on); ``score`` is the real AgentGym score of the
    episode so far (what validators report: the last step's reward, success at 1, or 100 for SciWorld).
    """

    observation: str
    reward: float
    done: bool
    score: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Shaping:
    """The recipe's reward shaping knobs shared by every multi-turn env (env-specific bonuses live on the env).

    ``invalid_penalty`` is added for an unparseable or invalid action, ``timeout_penalty`` on the step that hits
    ``max_turns`` without success.  Both are negative: the recipe's "failure penalties".
    """

    progress: float = 0.15
    completion: float = 1.0
    invalid_penalty: float = -0.05
    timeout_penalty: float = -0.2


@runtime_checkable
class MultiTurnEnv(Protocol):
    """An AgentGym-style episode.

    ``instructions`` is the env's fixed first user turn (the action grammar and reply format); the conversation is
    ``user: instructions``, ``assistant: OK``, ``user: reset(...)``, then alternating replies and observations —
    AgentGym's layout.  ``split`` (``train``/``eval``) makes the task sets disjoint by construction.
    """

    name: str
    max_turns: int
    instructions: str

    def reset(self, task_id: int) -> str:
        """Start the episode for ``task_id``; returns the first observation (goal + state)."""
        ...

    def step(self, reply: str) -> Step:
        """Parse an action from the model's raw text and apply it; bad actions cost a step, never raise."""
        ...

    def expert_reply(self) -> str:
        """The scripted expert's next reply (ReAct ``Thought:/Action:`` text) from the current state."""
        ...


_REGISTRY: dict[str, str] = {
    "affine:sat": "affine.envs.sat:SAT",
    "affine:abd": "affine.envs.abd:ABD",
    "affine:ded": "affine.envs.ded:DED",
    "agentgym:webshop": "affine.envs.agentgym.webshop:WebShop",
    "agentgym:alfworld": "affine.envs.agentgym.alfworld:ALFWorld",
    "agentgym:babyai": "affine.envs.agentgym.babyai:BabyAI",
    "agentgym:sciworld": "affine.envs.agentgym.sciworld:SciWorld",
    "agentgym:textcraft": "affine.envs.agentgym.textcraft:TextCraft",
}


SPLITS = ("train", "eval")


def check_split(split: str) -> str:
    """Every env draws train and eval tasks from disjoint sets; anything else is a caller's typo."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    return split


def env_names() -> list[str]:
    return list(_REGISTRY)


def _resolve(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def available(name: str) -> bool:
    """Whether the env's implementation is importable here (some arrive in later issues or need extras)."""
    try:
        _resolve(_REGISTRY[name])
    except (KeyError, ImportError, AttributeError):
        return False
    return True


def make(name: str, **options: Any) -> Any:
    """Build an env by registry name; ``options`` are the env's own params (difficulty, backend, …)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment {name!r}; known: {', '.join(_REGISTRY)}")
    try:
        cls = _resolve(_REGISTRY[name])
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"environment {name!r} is not available in this install: {exc}") from exc
    return cls(**options)


def is_single_turn(env: Any) -> bool:
    return hasattr(env, "sample") and hasattr(env, "score")
