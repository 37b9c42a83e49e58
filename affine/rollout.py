"""One engine that plays many episodes at once: collect (experts), RL (sampling) and evaluate (greedy) all use it.

Each episode is a chat.  A single-turn task is a one-step episode (``user: challenge["prompt"]``, reward = its
score); a multi-turn env follows AgentGym's layout (``user: instructions``, ``assistant: OK``, ``user: reset()``,
then alternating replies and observations).  Every turn, the replies of all *live* episodes are generated in one
left-padded, KV-cached ``generate`` call (sorted by length, chunked by ``batch_size``), so episodes that finish
early stop costing compute while the others go on.

For RL each episode also carries token-level tensors built *incrementally from the ids actually sampled* (never
re-tokenised text, which may split differently and would make the old log-probs lie):

* ``token_ids``     — the whole conversation as the model saw it;
* ``action_mask``   — 1 exactly on the tokens the model generated, its closing ``<|im_end|>`` included; the
  instructions, observations, chat headers (and an ``<|im_end|>`` we had to append to a reply cut off by
  ``max_new_tokens``) are 0 and never trained on;
* ``token_rewards`` — each turn's shaped reward on the *last generated token* of the action that earned it;
* ``turn_ends``     — 1 on those same positions (a turn may earn 0, so rewards alone cannot mark them).

An episode the env ended is ``terminal``; one cut by ``max_turns`` is not, and then its final observation is
appended (messages and tokens, mask 0) so the critic's value at the last position can bootstrap the return.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from affine.chat import render_prompt
from affine.envs.agentgym.react import ACKNOWLEDGEMENT
from affine.envs.base import Challenge, is_single_turn
from affine.generation import generate_ids

Messages = list[dict[str, str]]
# policy(env, messages so far, challenge or None for multi-turn envs) -> reply text; replaces the model.
Policy = Callable[[Any, Messages, Challenge | None], str]
# reward_fn(env_name, messages incl. the reply, step_reward, info) -> shaped reward (see affine.rl.rewards).
RewardFn = Callable[[str, Messages, float, dict[str, Any]], float]


def expert_policy(env: Any, messages: Messages, challenge: Challenge | None) -> str:
    """The envs' own demonstrations: ``solution(challenge)`` for single-turn tasks, ``expert_reply()`` otherwise."""
    return env.solution(challenge) if challenge is not None else env.expert_reply()


@dataclass
class Episode:
    """One played episode: what the logs and evaluation read, plus the token tensors RL trains on."""

    env: str
    task_id: int
    messages: Messages
    rewards: list[float]  # shaped reward per turn (after reward_fn)
    score: float  # the real score: single-turn score, or the last step's AgentGym score
    success: bool
    turns: int
    terminal: bool  # False: cut by max_turns while the env was still running
    challenge: Challenge | None = None
    token_ids: torch.Tensor | None = None  # (L,) long; None when a policy replaced the model
    action_mask: torch.Tensor | None = None  # (L,) bool
    token_rewards: torch.Tensor | None = None  # (L,) float32
    turn_ends: torch.Tensor | None = None  # (L,) bool
    infos: list[dict[str, Any]] = field(default_factory=list)

    @property
    def shaped_return(self) -> float:
        return float(sum(self.rewards))

    @property
    def new_tokens(self) -> int:
        return 0 if self.action_mask is None else int(self.action_mask.sum())


@dataclass
class _State:
    """An episode in progress; ``ids``/``mask``/``reward_at`` stay empty when no tokenizer is involved."""

    env: Any
    task_id: int
    challenge: Challenge | None
    messages: Messages
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    reward_at: dict[int, float] = field(default_factory=dict)
    rewards: list[float] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    score: float = 0.0
    success: bool = False
    done: bool = False
    terminal: bool = False


def play(
    model: Any,
    tokenizer: Any,
    envs_and_tasks: Sequence[tuple[Any, int]],
    *,
    max_new_tokens: int,
    temperature: float,
    max_turns: int,
    policy: Policy | None = None,
    reward_fn: RewardFn | None = None,
    batch_size: int | None = None,
    max_context: int | None = None,
    on_turn: Callable[[int], None] | None = None,
) -> list[Episode]:
    """Play one episode per ``(env, task_id)``; results in input order.

    A single-turn task's ``task_id`` is the seed for ``env.sample``.  Concurrent multi-turn episodes need distinct
    env objects (an env holds one episode's state).  ``temperature`` 0 is greedy.  With ``policy``, ``model`` is
    unused, ``tokenizer`` may be None and the episodes carry no token tensors.  With ``max_context`` (the model's
    context length), an episode whose next prompt plus ``max_new_tokens`` would not fit ends there, truncated.
    ``on_turn(live)`` is called after each turn with the number of episodes still running (progress bars).
    """
    multi = [id(env) for env, _ in envs_and_tasks if not is_single_turn(env)]
    if len(multi) != len(set(multi)):
        raise ValueError("the same multi-turn env object appears twice: give each concurrent episode its own env")
    tokens = policy is None
    states = [_start(env, int(task_id), tokenizer if tokens else None) for env, task_id in envs_and_tasks]
    for turn in range(max_turns):
        if max_context is not None and tokens:
            for s in states:
                s.done = s.done or len(s.ids) + max_new_tokens > max_context
        live = [s for s in states if not s.done]
        if not live:
            break
        if policy is not None:
            replies = [(policy(s.env, s.messages, s.challenge), None) for s in live]
        else:
            generated = generate_ids(
                model,
                tokenizer,
                [s.ids for s in live],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                batch_size=batch_size or len(live),
            )
            replies = [(tokenizer.decode(g, skip_special_tokens=True), g) for g in generated]
        for state, (text, ids) in zip(live, replies, strict=True):
            _advance(state, text, ids, tokenizer, reward_fn, last_turn=turn == max_turns - 1)
        if on_turn is not None:
            on_turn(sum(not s.done for s in states))
    for s in states:
        if not s.terminal:
            _close(s.env)
    return [_finish(s) for s in states]


def _close(env: Any) -> None:
    """End an episode this engine cut off (context length or ``max_turns``) while its env still runs.

    Why: an env may hold an outside resource per episode (SciWorld a JVM, an HTTP env a server instance) and frees
    it only when the episode ends by itself; a cut-off episode would keep it until garbage collection.
    """
    close = getattr(env, "close", None)
    if callable(close) and not is_single_turn(env):
        close()


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def opening(env: Any, task_id: int) -> tuple[Challenge | None, list[dict[str, str]]]:
    """The conversation an episode starts from: a single-turn challenge's prompt, or (multi-turn, which resets
    ``env``) AgentGym's instructions, our acknowledgement and the first observation.  Also the challenge, if any."""
    if is_single_turn(env):
        challenge = env.sample(task_id)
        return challenge, [{"role": "user", "content": challenge["prompt"]}]
    first = env.reset(task_id)
    return None, [
        {"role": "user", "content": env.instructions},
        {"role": "assistant", "content": ACKNOWLEDGEMENT},
        {"role": "user", "content": first},
    ]


def _start(env: Any, task_id: int, tokenizer: Any | None) -> _State:
    challenge, messages = opening(env, task_id)
    state = _State(env, task_id, challenge, messages)
    if tokenizer is not None:
        state.ids = _encode(tokenizer, render_prompt(tokenizer, state.messages))
        state.mask = [0] * len(state.ids)
    return state


def _success(env: Any, score: float, info: dict[str, Any]) -> bool:
    """AgentGym counts success at score 1 (100 for SciWorld); an env may say so itself in ``info["success"]``."""
    if "success" in info:
        return bool(info["success"])
    threshold = getattr(env, "success_score", 100.0 if "sciworld" in getattr(env, "name", "") else 1.0)
    return score >= threshold


def _advance(
    state: _State,
    text: str,
    ids: list[int] | None,
    tokenizer: Any | None,
    reward_fn: RewardFn | None,
    last_turn: bool,
) -> None:
    """Record one reply: append its tokens, step the env, place the reward, append the observation if going on."""
    state.messages.append({"role": "assistant", "content": text})
    if ids is not None:
        state.ids.extend(ids)
        state.mask.extend([1] * len(ids))
        reward_pos = len(state.ids) - 1
        if ids[-1] != tokenizer.eos_token_id:  # cut off by max_new_tokens: close the turn, but don't train on it
            state.ids.append(tokenizer.eos_token_id)
            state.mask.append(0)
    if state.challenge is not None:
        score = float(state.env.score(state.challenge, text))
        reward, observation, done = score, None, True
        info: dict[str, Any] = {"challenge": state.challenge, "score": score}
    else:
        step = state.env.step(text)
        score, reward, observation, done = float(step.score), float(step.reward), step.observation, step.done
        info = {**step.info, "score": score, "done": done}
    if reward_fn is not None:
        reward = float(reward_fn(state.env.name, state.messages, reward, info))
    state.rewards.append(reward)
    state.infos.append(info)
    state.score, state.success = score, _success(state.env, score, info)
    if ids is not None:
        state.reward_at[reward_pos] = reward
    state.done, state.terminal = done or last_turn, done
    if done:
        return
    # Going on, or truncated (then the observation is the state the critic bootstraps from).
    state.messages.append({"role": "user", "content": observation})
    if tokenizer is not None and ids is not None:
        suffix = _encode(tokenizer, _observation_suffix(tokenizer, state.messages))
        state.ids.extend(suffix)
        state.mask.extend([0] * len(suffix))


def _observation_suffix(tokenizer: Any, messages: Messages) -> str:
    """What the chat template puts after the reply's ``<|im_end|>``: the user turn and the next assistant header.

    Derived from the template itself (render with and without the new user turn, cut after the last end-of-turn
    token), so any template whose assistant turns end with the eos token works, not only ChatML.
    """
    full = render_prompt(tokenizer, messages)
    before = tokenizer.apply_chat_template(messages[:-1], tokenize=False)
    eos = tokenizer.eos_token
    cut = before.rindex(eos) + len(eos)
    if full[:cut] != before[:cut]:
        raise ValueError("the chat template renders earlier turns differently once a turn is added")
    return full[cut:]


def _finish(state: _State) -> Episode:
    episode = Episode(
        env=state.env.name,
        task_id=state.task_id,
        messages=state.messages,
        rewards=state.rewards,
        score=state.score,
        success=state.success,
        turns=len(state.rewards),
        terminal=state.terminal,
        challenge=state.challenge,
        infos=state.infos,
    )
    if state.ids:
        episode.token_ids = torch.tensor(state.ids, dtype=torch.long)
        episode.action_mask = torch.tensor(state.mask, dtype=torch.bool)
        episode.token_rewards = torch.zeros(len(state.ids), dtype=torch.float32)
        episode.turn_ends = torch.zeros(len(state.ids), dtype=torch.bool)
        for pos, reward in state.reward_at.items():
            episode.token_rewards[pos] = reward
            episode.turn_ends[pos] = True
    return episode


@torch.inference_mode()
def throughput(episodes: Sequence[Episode], seconds: float) -> float:
    """Generated tokens per second over a ``play`` call (env time included: the rate the trainer really gets)."""
    return sum(e.new_tokens for e in episodes) / max(seconds, 1e-9)


def timed_play(*args: Any, **kwargs: Any) -> tuple[list[Episode], float]:
    """``play`` plus its wall time in seconds."""
    start = time.perf_counter()
    episodes = play(*args, **kwargs)
    return episodes, time.perf_counter() - start
