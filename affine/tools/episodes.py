"""How multi-turn episodes fail: a per-env reading of evaluate's samples (``data/eval/<model>.jsonl``).

Why a tool: the eval table says how often an agent fails, not how.  Reading the landed models' BabyAI transcripts
by hand (twice, with throwaway scripts) found one failure behind all of them: the reply names an action the env
does not list, the env rejects it, nothing changes, and greedy decoding repeats it to the turn limit.  Neither
the scores nor the RL curves show that, and it decides what to change next (SFT data, rewards, curriculum).

Per env this counts episodes and successes, mean turns, the share of env answers that reject the action (the
env's own rejection texts, below), the failures whose last ``--loop`` actions are one action repeated, and the
actions failures end on most often.  Single-turn rows (SAT/ABD/DED: ``prompt``/``reply``, no conversation) are
counted and otherwise skipped.

Usage: ``python -m affine.tools.episodes data/eval/rl.jsonl [more.jsonl ...] [--loop 3] [--top 5] [--json out]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from affine.envs.agentgym.babyai import NO_CHANGE, NOT_RECOGNIZED
from affine.envs.agentgym.react import ACKNOWLEDGEMENT, INVALID_ACTION, MULTIPLE_ACTIONS, parse_last

# What the envs answer when they do not carry out an action: BabyAI's two texts, the AgentGym client's own two, and
# TextCraft's "Could not find ..." / "Could not execute ..." (the real server's, in ../shared/agentgym-real).
REJECTIONS: tuple[str, ...] = (NOT_RECOGNIZED, NO_CHANGE, INVALID_ACTION, MULTIPLE_ACTIONS, "Could not ")
NO_ACTION = "(no action)"


@dataclass
class EnvReading:
    """What one env's episodes did; ``top_failure_actions`` pairs an action with how many failures end on it."""

    episodes: int = 0
    successes: int = 0
    single_turn: int = 0
    turns: int = 0
    rejected_turns: int = 0
    looping_failures: int = 0
    top_failure_actions: list[tuple[str, int]] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return self.episodes - self.successes


def action_of(reply: str) -> str:
    """The action a reply names: the first line of what AgentGym's client reads after its last ``Action:``."""
    action = parse_last(reply).action
    return NO_ACTION if action is None else action.splitlines()[0].strip()


def turns_of(messages: list[dict]) -> list[tuple[str, str | None]]:
    """``(action, env answer or None)`` per policy turn; AgentGym's ``OK`` after the instructions is not a turn."""
    turns: list[tuple[str, str | None]] = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        if not turns and message.get("content", "").strip() == ACKNOWLEDGEMENT:
            continue
        after = messages[i + 1] if i + 1 < len(messages) and messages[i + 1].get("role") == "user" else None
        turns.append((action_of(message.get("content", "")), None if after is None else after.get("content", "")))
    return turns


def is_rejection(answer: str) -> bool:
    return answer.lstrip().startswith(REJECTIONS)


def read_rows(paths: list[Path]) -> list[dict]:
    """Every row of every file; a missing file or a line that is not a JSON object is a one-line ``ValueError``."""
    rows: list[dict] = []
    for path in paths:
        if not path.is_file():
            raise ValueError(f"{path}: no such file (evaluate writes data/eval/<model>.jsonl)")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or "env" not in row:
                raise ValueError(f"{path}:{number}: not an evaluate sample (a JSON object with an 'env' key)")
            rows.append(row)
    return rows


def summarize(rows: list[dict], loop: int = 3, top: int = 5) -> dict[str, EnvReading]:
    """Per-env readings, envs in first-seen order.  A failure "loops" when its last ``loop`` actions are equal."""
    if loop < 2:
        raise ValueError(f"--loop must be at least 2, got {loop}")
    readings: dict[str, EnvReading] = {}
    endings: dict[str, Counter[str]] = {}
    for row in rows:
        env = str(row["env"])
        reading = readings.setdefault(env, EnvReading())
        reading.episodes += 1
        success = bool(row.get("success", float(row.get("score", 0.0)) >= 1.0))
        reading.successes += success
        messages = row.get("episode")
        if not isinstance(messages, list):
            reading.single_turn += 1
            continue
        turns = turns_of(messages)
        reading.turns += len(turns)
        reading.rejected_turns += sum(1 for _, answer in turns if answer is not None and is_rejection(answer))
        if success or not turns:
            continue
        actions = [action for action, _ in turns]
        endings.setdefault(env, Counter())[actions[-1]] += 1
        if len(actions) >= loop and len(set(actions[-loop:])) == 1:
            reading.looping_failures += 1
    for env, counter in endings.items():
        readings[env].top_failure_actions = counter.most_common(top)
    return readings


def render(readings: dict[str, EnvReading], loop: int) -> str:
    """A markdown table, then each multi-turn env's most frequent last actions of failures."""
    lines = [
        f"| env | episodes | successes | mean turns | rejected turns | failures looping ({loop} same) |",
        "|---|---|---|---|---|---|",
    ]
    for env, r in readings.items():
        if r.single_turn == r.episodes:
            lines.append(f"| {env} | {r.episodes} | {r.successes} | single-turn | - | - |")
            continue
        multi = r.episodes - r.single_turn
        rejected = f"{r.rejected_turns}/{r.turns} ({r.rejected_turns / max(r.turns, 1):.0%})"
        lines.append(
            f"| {env} | {r.episodes} | {r.successes} | {r.turns / max(multi, 1):.1f} | {rejected} "
            f"| {r.looping_failures}/{r.failures} |"
        )
    for env, r in readings.items():
        if r.top_failure_actions:
            ends = ", ".join(f"{action!r} x{count}" for action, count in r.top_failure_actions)
            lines.append(f"\n{env}: failures end on {ends}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="evaluate's samples, e.g. data/eval/rl.jsonl")
    parser.add_argument("--loop", type=int, default=3, help="a failure loops when its last N actions are one action")
    parser.add_argument("--top", type=int, default=5, help="how many failure-ending actions to list per env")
    parser.add_argument("--json", type=Path, help="also write the readings here as JSON")
    args = parser.parse_args(argv)
    try:
        readings = summarize(read_rows(args.files), args.loop, args.top)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(readings, args.loop))
    if args.json:
        payload = {env: {**asdict(r), "failures": r.failures} for env, r in readings.items()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
