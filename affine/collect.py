"""Build the SFT corpus: Affine task solutions and scripted-expert AgentGym episodes, in chat ``messages`` form.

Every example is checked before it is written — an Affine target must score 1.0 under the validator's own scorer,
an expert episode must end in success — so SFT never learns from a wrong demonstration.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from affine.config import Params
from affine.envs.agentgym.react import ACKNOWLEDGEMENT, to_messages
from affine.envs.options import build_env, server_task_map

log = logging.getLogger(__name__)


def even_split(total: int, names: list[str]) -> dict[str, int]:
    """``total`` spread over ``names`` as evenly as possible (earlier names take the remainder)."""
    if not names:
        return {}
    base, extra = divmod(total, len(names))
    return {name: base + (i < extra) for i, name in enumerate(names)}


def affine_examples(name: str, count: int, params: Params) -> Iterator[dict]:
    env = build_env(name, params.envs, split="train")
    kept = seed = 0
    budget = count * 3 + 10
    with tqdm(total=count, desc=f"collect {name}", unit="ex") as bar:
        while kept < count and seed < budget:
            challenge = env.sample(seed)
            seed += 1
            target = env.solution(challenge)
            if env.score(challenge, target) != 1.0:
                log.warning("%s: skipping %s, its reference solution does not score 1", name, challenge["task_id"])
                continue
            kept += 1
            bar.update()
            messages = [{"role": "user", "content": challenge["prompt"]}, {"role": "assistant", "content": target}]
            yield {"messages": messages, "env": name, "task_id": challenge["task_id"]}
    if kept < count:
        log.warning("%s: only %d of %d examples could be built", name, kept, count)


def expert_episode(env: Any, task_id: int, max_turns: int) -> tuple[list[dict], float, bool]:
    """One episode played by the env's scripted expert, as AgentTraj ``conversations``."""
    conversations = [
        {"from": "human", "value": env.instructions},
        {"from": "gpt", "value": ACKNOWLEDGEMENT, "loss": False},  # as AgentGym's data marks it: context, not a target
        {"from": "human", "value": env.reset(task_id)},
    ]
    step = None
    for _ in range(max_turns):
        reply = env.expert_reply()
        conversations.append({"from": "gpt", "value": reply})
        step = env.step(reply)
        if step.done:
            break
        conversations.append({"from": "human", "value": step.observation})
    success = bool(step is not None and step.done and step.info.get("success", False))
    return conversations, (step.score if step else 0.0), success


def _train_ids(env: object) -> Iterator[int]:
    """The task ids an env's train split plays, in order: its finite task list (cycled) where it names one, else
    0, 1, 2, ... without the ids it does not use (BabyAI ids of levels outside the selected ones)."""
    ids = getattr(env, "task_ids", None)
    if ids:
        yield from itertools.cycle(ids)
    used = getattr(env, "used", lambda _: True)
    yield from (k for k in itertools.count() if used(k))


def real_ids(name: str, env: object) -> Callable[[int], int]:
    """Our train task id -> the AgentGym server's ``data_idx`` (BabyAI, TextCraft, SciWorld), else the id itself.

    Why: AgentTraj names an item ``<env>_<data_idx>``; with the real index an item id says which server task the
    episode is, so it can be replayed there (and matched against real trajectories).
    """
    mapping = server_task_map(name.split(":", 1)[1], "train", getattr(env, "difficulty", None))
    return mapping if mapping is not None else int


def agentgym_examples(name: str, count: int, params: Params) -> Iterator[dict]:
    env = build_env(name, params.envs, split="train")
    to_real = real_ids(name, env)
    max_turns = params.collect.agentgym.max_episode_length
    kept = tried = 0
    budget = count * 2 + 10
    with tqdm(total=count, desc=f"collect {name}", unit="ep") as bar:
        for task_id in _train_ids(env):
            if kept >= count or tried >= budget:
                break
            conversations, score, success = expert_episode(env, task_id, max_turns)
            tried += 1
            if not success:
                continue
            kept += 1
            bar.update()
            item_id = f"{name.split(':')[1]}_{to_real(task_id)}"
            yield {"messages": to_messages(conversations), "env": name, "task_id": item_id, "score": score}
    if kept < count:
        log.warning("%s: the expert succeeded on only %d of %d episodes", name, kept, count)


def trajectory_examples(path: str | Path) -> Iterator[dict]:
    """Real AgentTraj files: a JSON list of ``{item_id, conversations: [{from, value}]}``."""
    rows = json.loads(Path(path).read_text())
    if not isinstance(rows, list):
        raise ValueError(f"{path}: an AgentTraj file is a JSON list of items")
    for row in rows:
        if not isinstance(row, dict) or "conversations" not in row:
            raise ValueError(f"{path}: every item needs 'item_id' and 'conversations'")
        env = "agentgym:" + str(row.get("item_id", "unknown_0")).rsplit("_", 1)[0]
        yield {"messages": to_messages(row["conversations"]), "env": env, "task_id": row.get("item_id")}


def collect(params: Params, out_path: str | Path) -> dict[str, int]:
    """Write every SFT example to ``out_path`` (JSONL); returns the count per env."""
    c = params.collect
    counts: dict[str, int] = {}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w") as handle:

        def write(rows: Iterator[dict]) -> None:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                counts[row["env"]] = counts.get(row["env"], 0) + 1

        for name, n in even_split(c.affine.num_samples, list(c.affine.environments)).items():
            write(affine_examples(name, n, params))
        for name, n in even_split(c.agentgym.num_episodes, list(c.agentgym.environments)).items():
            write(agentgym_examples(name, n, params))
        for path in c.agentgym.trajectory_files:
            write(trajectory_examples(path))
    log.info("wrote %d SFT examples to %s: %s", sum(counts.values()), out_path, counts)
    return counts
