"""Turn the ``envs`` section of params into constructor options, so collect, rl and evaluate build identical envs."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from affine.config import EnvsParams
from affine.envs.base import Shaping, make

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # envs already warned about (evaluate builds one env per parallel episode)


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
        if p.difficulty is not None:
            options["difficulty"] = p.difficulty
        if p.max_turns is not None:
            options["max_turns"] = p.max_turns
        if p.backend == "agentgym":  # max_turns None: the client uses AgentGym's round limit for this env
            return {"env": short, "server_url": p.server_url, "max_turns": p.max_turns, "split": split}
        if p.backend == "scienceworld":
            options["backend"] = "scienceworld"
    return options


def read_instructions(path: str, key: str) -> str:
    """The text of an instructions file, exactly as written (the first user turn of every episode).

    A missing, unreadable, non-UTF-8 or blank file stops with one line naming ``key``: a silently empty first turn
    would train and evaluate on a prompt nobody meant.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"{key}: cannot read {path!r} ({reason})") from None
    if not text.strip():
        raise ValueError(f"{key}: {path!r} is empty")
    return text


def server_task_map(short: str, split: str, difficulty: int | None = None) -> Callable[[int], int] | None:
    """Our ``split``'s task id → the real server's: the env module's ``server_task_id(split, task_id)``, else the
    ``data_idx`` method of the local env built with the same options (BabyAI and TextCraft: their maps depend on
    ``difficulty``; None: the env's default).

    Why: an env keeps its eval tasks disjoint from its train tasks by mapping ids (e.g. eval ``k`` is a real id no
    train task uses); a real server must get the same real ids, or evaluation there would replay training tasks.
    Without either, ids go as given, and for the eval split a warning says that they may overlap training.
    """
    try:
        module = importlib.import_module(f"affine.envs.agentgym.{short}")
    except ImportError:
        module = None
    mapping = getattr(module, "server_task_id", None)
    if callable(mapping):
        return lambda task_id: int(mapping(split, task_id))
    chosen = {} if difficulty is None else {"difficulty": difficulty}
    local = make(f"agentgym:{short}", split=split, **chosen) if module is not None else None
    method = getattr(local, "data_idx", None)
    if callable(method):
        return lambda task_id: int(method(task_id))
    if split == "eval" and short not in _WARNED:
        _WARNED.add(short)
        log.warning(
            "agentgym:%s: no task id map (server_task_id or data_idx), eval task ids go to the server as given", short
        )
    return None


def build_env(name: str, envs: EnvsParams, split: str) -> Any:
    """The env ``name`` configured from params; AgentGym envs with ``backend: agentgym`` become HTTP clients, and an
    ``instructions_file`` replaces the env's instructions (collect, rl and evaluate all build their envs here)."""
    short = name.split(":", 1)[1]
    p = envs.agentgym.get(short)
    options = env_options(name, envs, split)
    if p is not None and p.backend == "agentgym":
        from affine.envs.agentgym.http import HTTPEnv

        env = HTTPEnv(**options)
        env.task_map = server_task_map(short, split, p.difficulty)
    else:
        env = make(name, **options)
    if p is not None and p.instructions_file is not None:
        env.instructions = read_instructions(p.instructions_file, f"envs.agentgym.{short}.instructions_file")
    if isinstance(getattr(env, "shaping", None), Shaping):
        # Keep each env's own progress/completion bonuses; the failure penalties are global params.
        env.shaping = replace(env.shaping, invalid_penalty=envs.invalid_penalty, timeout_penalty=envs.timeout_penalty)
    return env
