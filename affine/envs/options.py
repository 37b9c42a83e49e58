"""Turn the ``envs`` section of params into constructor options, so collect, rl and evaluate build identical envs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from affine.config import EnvsParams
from affine.envs.base import Shaping, make


def env_options(name: str, envs: EnvsParams, split: str) -> dict[str, Any]:
    if name == "affine:sat":
        return {**envs.sat.model_dump(), "split": split}
    if name in ("affine:abd", "affine:ded"):
        p = envs.programs
        return {
            "source": p.source,
            "dataset": p.dataset if p.source == "hub" else (p.files or None),
            "buffer_size": p.buffer_size,
            "difficulty": p.difficulty,
            "split": split,
            "prompt_file": (envs.abd if name == "affine:abd" else envs.ded).prompt_file,
        }
    short = name.split(":", 1)[1]
    p = envs.agentgym.get(short)
    options: dict[str, Any] = {"split": split}
    if p is not None:
        options["difficulty"] = p.difficulty
        if p.max_turns is not None:
            options["max_turns"] = p.max_turns
        if p.backend == "agentgym":
            return {"env": short, "server_url": p.server_url, "max_turns": p.max_turns or 10}
        if p.backend == "scienceworld":
            options["backend"] = "scienceworld"
    return options


def build_env(name: str, envs: EnvsParams, split: str) -> Any:
    """The env ``name`` configured from params; AgentGym envs with ``backend: agentgym`` become HTTP clients."""
    short = name.split(":", 1)[1]
    p = envs.agentgym.get(short)
    options = env_options(name, envs, split)
    if p is not None and p.backend == "agentgym":
        from affine.envs.agentgym.http import HTTPEnv

        env = HTTPEnv(**options)
    else:
        env = make(name, **options)
    if isinstance(getattr(env, "shaping", None), Shaping):
        # Keep each env's own progress/completion bonuses; the failure penalties are global params.
        env.shaping = replace(env.shaping, invalid_penalty=envs.invalid_penalty, timeout_penalty=envs.timeout_penalty)
    return env
