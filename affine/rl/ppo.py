"""The RL loop: PPO with a value head, or GRPO (``rl.algorithm``), on rollouts from :mod:`affine.rollout`.

One iteration = play episodes with the current policy → score them once without gradients (old log-probs, values,
reference log-probs) → advantages (GAE, or group-relative for GRPO) → ``ppo_epochs`` passes of shuffled minibatches
of ``minibatch_size`` episodes → log → maybe checkpoint.

Decisions, and why (the policy and its reference: :mod:`affine.rl.actor`):

* **No dropout, ever**: every dropout layer stays in eval mode during updates, so the first epoch's ratio is exactly
  1 and every ratio reflects parameter change, not dropout noise.  The rest of the model is in train mode because
  transformers runs activation recompute (``rl.gradient_checkpointing``) only there; Llama-style attention
  dropout is 0 in their configs.
* **Turn-level discounting** by default (``rl.gae_level: turn``, see :mod:`affine.rl.gae`): ``gamma``/``lam`` per
  env step, not per token.  ``token`` gives TRL-style token-level GAE.
* **KL to the reference** (``kl_coef`` > 0) is the k3 estimator added to the loss (GRPO-style) rather than folded into
  rewards, so one implementation serves PPO and GRPO; the rollout-time KL (``kl_ref``) is logged either way.
* **Randomness is a function of (seed, iteration, process)**: each iteration reseeds sampling, task choice and
  minibatch order, so a resumed run replays exactly what an uninterrupted run would have done — the checkpoint's
  iteration number *is* its RNG state (no pickled generator states to go stale across torch versions).
* **The horizon grows on a schedule** (``rl.horizon_schedule``, :func:`affine.rl.loop.horizon_at`): like
  AgentGym-RL's ScalingInter-RL, early iterations play short episodes and later ones longer; a cut episode is
  not terminal, so its return bootstraps from the critic instead of counting as a failure.

Distributed: runs unchanged under ``accelerate launch``.  The actor-critic module and the optimizer go through
``Accelerator.prepare`` (DDP); every process plays ``rollout_batch_size`` episodes per env (the batch size is *per
process*, so all ranks do the same number of minibatch steps), generates with the unwrapped model, and metrics are
summed across processes; only the main process logs and writes checkpoints and the final adapter.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from affine.checkpoints import claim
from affine.config import Params
from affine.model import canonical_adapter_config
from affine.rl.actor import (
    DEFAULT,
    ActorCritic,
    Batch,
    autocast_dtype,
    collate,
    load_policy,
    score_rollout,
    select,
    without_dropout,
)
from affine.rl.gae import gae
from affine.rl.loop import (
    Curriculum,
    EnvPool,
    RLProgress,
    RolloutGenerator,
    horizon_at,
    latest_checkpoint,
    load_checkpoint,
    make_train_env,
    save_checkpoint,
)
from affine.rl.losses import (
    approx_kl,
    explained_variance,
    grpo_advantages,
    masked_whiten,
    policy_loss,
    spread,
    value_loss,
)
from affine.rl.rewards import load_reward_fn
from affine.rl.value_head import ValueHead
from affine.rollout import Episode, throughput, timed_play

__all__ = ["ActorCritic", "collate", "plan_iteration", "train_rl"]

log = logging.getLogger(__name__)


def add_advantages(batch: Batch, params: Params, groups: torch.Tensor) -> None:
    """PPO: GAE on the critic's values, whitened over action tokens.  GRPO: group-relative episode returns."""
    rl, mask = params.rl, batch["mask"]
    if rl.algorithm == "grpo":
        batch["advantages"] = spread(grpo_advantages(batch["rewards"].sum(1), groups), mask)
        batch["returns"] = torch.zeros_like(batch["rewards"])
        return
    level = rl.gae_level
    advantages, returns = gae(
        batch["rewards"],
        batch["old_values"],
        mask,
        gamma=rl.gamma,
        lam=rl.gae_lambda,
        last_values=batch["last_values"],
        terminal=batch["terminal"],
        step_ends=batch["turn_ends"] if level == "turn" else None,
    )
    batch["advantages"], batch["returns"] = masked_whiten(advantages, mask), returns


def update(model: Any, optimizer: Any, accelerator: Any, batch: Batch, params: Params, order: torch.Generator) -> dict:
    """``ppo_epochs`` passes over shuffled minibatches; returns the mean of each loss term and diagnostic."""
    rl = params.rl
    value_clip = rl.value_clip_range
    sums: dict[str, float] = {}
    steps = 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    for _ in range(rl.ppo_epochs):
        for rows in torch.randperm(batch["ids"].shape[0], generator=order).split(rl.minibatch_size):
            mb = select(batch, rows, accelerator.device)
            mask = mb["mask"]
            logprobs, entropy, values, _ = model(mb["ids"], mb["attention"], mask, rl.temperature)
            pg, clip_frac = policy_loss(logprobs, mb["old_logprobs"], mb["advantages"], mask, rl.clip_range)
            kl_ref = approx_kl(logprobs, mb["ref_logprobs"], mask)
            loss = pg - rl.entropy_coef * entropy + rl.kl_coef * kl_ref
            terms = {"policy_loss": pg, "entropy": entropy, "clip_frac": clip_frac, "kl_ref_loss": kl_ref}
            if values is not None:
                terms["value_loss"] = value_loss(values, mb["returns"], mask, mb["old_values"], value_clip)
                loss = loss + rl.vf_coef * terms["value_loss"]
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(trainable, rl.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
            terms["approx_kl"] = approx_kl(mb["old_logprobs"], logprobs.detach(), mask)
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value.detach().item()
            steps += 1
    return {key: value / max(steps, 1) for key, value in sums.items()}


def rollout_metrics(episodes: list[Episode], labels: list[str], names: list[str], accelerator: Any) -> dict:
    """Per-env real score and success rate, mean shaped return and turns — summed over all processes.

    ``labels`` are the env names the episodes were planned under (an env's own ``name`` is not trusted to match).
    """
    table = torch.zeros(len(names), 5)
    for e, label in zip(episodes, labels, strict=True):
        table[names.index(label)] += torch.tensor([1.0, e.score, float(e.success), e.shaped_return, e.turns])
    table = accelerator.reduce(table.to(accelerator.device), reduction="sum").cpu()
    count = table[:, 0].clamp(min=1)
    total = table.sum(0)
    metrics = {
        "return_mean": float(total[3] / total[0].clamp(min=1)),
        "success_rate": float(total[2] / total[0].clamp(min=1)),
        "turns_mean": float(total[4] / total[0].clamp(min=1)),
    }
    for i, name in enumerate(names):
        key = name.replace(":", "_")
        metrics[f"score/{key}"] = float(table[i, 1] / count[i])
        metrics[f"success/{key}"] = float(table[i, 2] / count[i])
    return metrics


def mean_over_processes(values: dict[str, float], accelerator: Any) -> dict[str, float]:
    """The per-process numbers (losses, KL, explained variance) averaged over processes, for one log line."""
    if accelerator.num_processes == 1:
        return values
    stacked = torch.tensor(list(values.values()), dtype=torch.float32, device=accelerator.device)
    return dict(zip(values, accelerator.reduce(stacked, reduction="mean").tolist(), strict=True))


def plan_iteration(
    pool: EnvPool, names: list[str], per_env: int, group_size: int, rng: random.Random
) -> tuple[list[tuple[Any, int]], torch.Tensor, list[str]]:
    """``per_env`` tasks per env, each played ``group_size`` times: the (env, task) list, group ids, env names.

    Task ids are drawn from ``env.num_tasks`` when an env has a finite task set (``env.task_ids[i]`` where it lists
    them), else from all 31-bit ints (the envs here derive a task from any id, and the train/eval splits are disjoint
    by construction).
    """
    plan, groups, labels = [], [], []
    for name in names:
        envs = pool.envs(name, per_env * group_size)
        size = getattr(envs[0], "num_tasks", None) or 2**31 - 1
        ids = getattr(envs[0], "task_ids", None)  # the ids this split uses, where they are not 0..num_tasks-1
        for k in range(per_env):
            task, group = rng.randrange(size), len(groups) // group_size
            task = ids[task] if ids else task
            plan += [(envs[k * group_size + j], task) for j in range(group_size)]
            groups += [group] * group_size
            labels += [name] * group_size
    return plan, torch.tensor(groups), labels


def seed_iteration(seed: int, iteration: int, rank: int) -> tuple[torch.Generator, random.Random]:
    """Reseed everything random for this iteration; see the module docstring for why."""
    value = (seed * 1_000_003 + iteration * 7919 + rank) % 2**63
    torch.manual_seed(value)
    return torch.Generator().manual_seed(value), random.Random(value)


def train_rl(
    params: Params,
    policy_dir: str | Path,
    out_dir: str | Path,
    metrics_dir: str | Path,
    resume: bool = True,
    *,
    env_factory: Callable[[str, int | None], Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> list[dict[str, float]]:
    """Train ``policy_dir`` with ``params.rl``; final adapter (+ tokenizer, value head) in ``out_dir``.

    ``env_factory(name, difficulty)`` builds a training env (default: :func:`affine.rl.loop.make_train_env`, i.e.
    ``build_env(name, params.envs, "train")`` at the curriculum's difficulty; ``difficulty`` is None without one).
    Returns this run's per-iteration metrics (also logged to dvclive).  ``resume=False`` deletes old checkpoints.
    Metrics logged after the last checkpoint of a killed run are logged again for the replayed iterations.
    ``checkpoint_dir`` (default ``out_dir/checkpoints``) with a ``fingerprint`` of the run's params and inputs:
    checkpoints of another run are discarded instead of resumed (:mod:`affine.checkpoints`).
    """
    from accelerate import Accelerator
    from dvclive import Live

    rl = params.rl
    out_dir, metrics_dir = Path(out_dir), Path(metrics_dir)
    accelerator = Accelerator()
    torch.manual_seed(params.base.seed)  # a fresh LoRA's and the value head's initial weights
    policy, tokenizer = load_policy(params, policy_dir)
    head = ValueHead(policy.config.hidden_size, rl.value_hidden_size) if rl.algorithm == "ppo" else None
    autocast = autocast_dtype(rl.bf16, accelerator.device)
    log.info("RL update: %s, activation recompute %s", autocast or "fp32", "on" if rl.gradient_checkpointing else "off")
    model = without_dropout(ActorCritic(policy, head, autocast).to(accelerator.device))  # (module docstring)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=rl.learning_rate)
    names = list(rl.environments)
    curriculum = Curriculum(rl.curriculum, names)
    root = Path(checkpoint_dir) if checkpoint_dir is not None else out_dir / "checkpoints"
    if not resume and accelerator.is_main_process:
        shutil.rmtree(root, ignore_errors=True)  # a fresh run must not later resume into an old one
    elif fingerprint is not None and accelerator.is_main_process:
        claim(root, fingerprint)
    accelerator.wait_for_everyone()
    latest = latest_checkpoint(root) if resume else None
    start = 0
    if latest is not None:
        start, curriculum.levels = load_checkpoint(latest, policy, head, optimizer)
        turns = horizon_at(rl.horizon_schedule, start, rl.max_episode_length)
        log.info("resuming from %s (iteration %d, horizon %d turns)", latest, start, turns)
    model, optimizer = accelerator.prepare(model, optimizer)
    inner: ActorCritic = accelerator.unwrap_model(model)
    pool = EnvPool(env_factory or functools.partial(make_train_env, envs=params.envs))
    reward_fn = load_reward_fn(rl.reward_fn)
    group_size = rl.group_size if rl.algorithm == "grpo" else 1
    live = None
    if accelerator.is_main_process:
        live = Live(str(metrics_dir), dvcyaml=False, resume=start > 0, save_dvc_exp=False)
        live.step = start
    history = []
    progress = RLProgress(rl.num_rollouts, start, len(names) * rl.rollout_batch_size * group_size, names, live)
    generator = RolloutGenerator(params, policy_dir, tokenizer)  # closed after the loop
    for iteration in range(start, rl.num_rollouts):
        order, rng = seed_iteration(params.base.seed, iteration, accelerator.process_index)
        pool.set_levels(curriculum.levels)
        plan, groups, labels = plan_iteration(pool, names, rl.rollout_batch_size, group_size, rng)
        max_turns = horizon_at(rl.horizon_schedule, iteration, rl.max_episode_length)
        progress.phase(iteration, f"playing {len(plan)} episodes together (up to {max_turns} turns each)")
        with generator.serving(inner.policy) as player:
            episodes, seconds = timed_play(
                player,
                tokenizer,
                plan,
                max_new_tokens=rl.max_new_tokens,
                temperature=rl.temperature,
                max_turns=max_turns,
                reward_fn=reward_fn,
                max_context=getattr(policy.config, "max_position_embeddings", None),
            )
        progress.played(len(episodes))
        progress.phase(iteration, f"{rl.algorithm} update: {rl.ppo_epochs} epochs, minibatches of {rl.minibatch_size}")
        batch = collate(episodes, tokenizer.pad_token_id)
        score_rollout(inner, batch, rl.minibatch_size, rl.temperature, accelerator.device)
        add_advantages(batch, params, groups)
        local = {
            "tokens_per_s": throughput(episodes, seconds),
            "kl_ref": float(approx_kl(batch["old_logprobs"], batch["ref_logprobs"], batch["mask"])),
        }
        if head is not None:
            local["explained_variance"] = explained_variance(batch["old_values"], batch["returns"], batch["mask"])
        local.update(update(model, optimizer, accelerator, batch, params, order))
        metrics = rollout_metrics(episodes, labels, names, accelerator)
        metrics.update(mean_over_processes(local, accelerator))
        metrics["tokens_per_s"] *= accelerator.num_processes  # every process generates at once
        metrics.update(curriculum.metrics())
        metrics["max_turns"] = float(max_turns)
        curriculum.update(iteration + 1, metrics)
        done = iteration + 1
        if done % rl.save_every == 0 or done == rl.num_rollouts:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                next_turns = horizon_at(rl.horizon_schedule, done, rl.max_episode_length)
                save_checkpoint(root, done, inner.policy, inner.value_head, optimizer, curriculum.levels, next_turns)
        if live is not None:
            for key, value in metrics.items():
                if not math.isnan(value):
                    live.log_metric(key, value)
            live.next_step()
        history.append({"iteration": done, **metrics})
        progress.finished(done, metrics)
    progress.close()
    generator.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        inner.policy.save_pretrained(str(out_dir), selected_adapters=[DEFAULT])
        canonical_adapter_config(out_dir)
        tokenizer.save_pretrained(str(out_dir))
        if inner.value_head is not None:
            inner.value_head.save(out_dir / "value_head.pt")
        if live is not None:
            live.end()
    return history
