"""The ``affine`` command: inspect and debug environments without running the pipeline.

``affine envs`` · ``affine sample ENV --seed N --n K`` · ``affine score ENV --challenge F --response F`` ·
``affine play ENV --seed N`` · ``affine sandbox run PROGRAM.py [--stdin F]`` · ``affine compare RESULTS.json…``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from affine.config import EnvsParams, ParamsError, load_params
from affine.envs.base import available, env_names, is_single_turn
from affine.envs.options import build_env
from affine.sandbox import SandboxUnavailable


def _envs_params(path: str | None) -> EnvsParams:
    return load_params(path).envs if path else EnvsParams()


def _build(name: str, args: argparse.Namespace) -> Any:
    return build_env(name, _envs_params(args.params), split=args.split)


def cmd_envs(args: argparse.Namespace) -> int:
    for name in env_names():
        print(f"{name}\t{'available' if available(name) else 'not installed'}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    env = _build(args.env, args)
    for offset in range(args.n):
        if is_single_turn(env):
            record = env.sample(args.seed + offset)
        else:
            task_id = args.seed + offset
            record = {
                "env": args.env,
                "task_id": task_id,
                "instructions": env.instructions,
                "prompt": env.reset(task_id),
            }
        print(json.dumps(record, ensure_ascii=False))
    return 0


def _read_challenge(path: str) -> dict:
    text = Path(path).read_text().strip()
    first = text.splitlines()[0] if text else ""
    try:
        challenge = json.loads(first if first.startswith("{") and first.endswith("}") else text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON challenge ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a JSON challenge (nested too deeply)") from None
    if not isinstance(challenge, dict):
        raise ValueError(f"{path}: a challenge is a JSON object")
    return challenge


def cmd_score(args: argparse.Namespace) -> int:
    env = _build(args.env, args)
    if not is_single_turn(env):
        raise ValueError(f"{args.env} is multi-turn: use `affine play {args.env}` instead")
    challenge = _read_challenge(args.challenge)
    reply = Path(args.response).read_text()
    _configure_sandbox(args.params)
    try:
        score = env.score(challenge, reply)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        # a challenge that is not the env's shape (missing keys, wrong types, mangled test cases): say which, no trace
        what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{args.challenge}: not a valid {args.env} challenge ({what})"[:500]) from None
    print(json.dumps({"env": args.env, "task_id": challenge.get("task_id"), "score": score}))
    return 0


def _configure_sandbox(params_path: str | None) -> None:
    """The ``sandbox`` params of ``--params`` (defaults without it), checked before anything runs."""
    from affine.config import SandboxParams
    from affine.sandbox import configure

    configure(**(load_params(params_path).sandbox if params_path else SandboxParams()).model_dump())


def cmd_play(args: argparse.Namespace) -> int:
    env = _build(args.env, args)
    if is_single_turn(env):
        challenge = env.sample(args.seed)
        print(challenge["prompt"])
        reply = sys.stdin.read()
        print(json.dumps({"score": env.score(challenge, reply)}))
        return 0
    print(env.instructions, "\n")
    print(env.reset(args.seed))
    for turn in range(1, env.max_turns + 1):
        try:
            line = input(f"\n[{turn}/{env.max_turns}] action (or 'expert', 'quit')> ").strip()
        except EOFError:
            break
        if line == "quit":
            break
        reply = env.expert_reply() if line == "expert" else f"Thought:\nI act.\n\nAction:\n{line}"
        if line == "expert":
            print(reply)
        step = env.step(reply)
        print(step.observation)
        print(f"(shaped reward {step.reward:+.2f}, score {step.score})")
        if step.done:
            print("episode finished:", "success" if step.info.get("success") else "failure")
            break
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from affine.sandbox import Limits, run_program

    program = Path(args.program).read_text()
    stdin = Path(args.stdin).read_text() if args.stdin else ""
    _configure_sandbox(args.params)
    result = run_program(program, stdin, Limits(wall_s=args.wall_s, cpu_s=args.cpu_s))
    print(
        json.dumps(
            {
                "stdout": result.stdout,
                "stderr": result.stderr,
                "returncode": result.returncode,
                "timed_out": result.timed_out,
                "truncated": result.truncated,
                "cpu_s": result.cpu_s,
                "isolation": result.isolation,
            }
        )
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from affine.eval.compare import main_compare

    print(main_compare(args.results, args.rev, args.rule))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="affine", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("envs", help="list environments").set_defaults(func=cmd_envs)

    def env_command(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("env", choices=env_names())
        p.add_argument("--params", help="read env options from this params.yaml (default: built-in defaults)")
        p.add_argument("--split", choices=["train", "eval"], default="train")
        p.set_defaults(func=func)
        return p

    p = env_command("sample", "print challenges as JSON lines", cmd_sample)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=1)
    p = env_command("score", "score a response to a challenge", cmd_score)
    p.add_argument("--challenge", required=True, help="a JSON file (or JSONL: the first line) from `affine sample`")
    p.add_argument("--response", required=True, help="a text file with the model's reply")
    p = env_command("play", "play an episode interactively", cmd_play)
    p.add_argument("--seed", type=int, default=0)

    sandbox = sub.add_parser("sandbox", help="run untrusted code in the sandbox")
    sandbox_sub = sandbox.add_subparsers(dest="action", required=True)
    p = sandbox_sub.add_parser("run", help="run a Python program; prints stdout/stderr/exit/timeout as JSON")
    p.add_argument("program")
    p.add_argument("--stdin")
    p.add_argument("--params", help="read the sandbox section from this params.yaml (default: built-in defaults)")
    p.add_argument("--wall-s", type=float, default=30.0, help="wall-clock limit (Affine's: 30)")
    p.add_argument("--cpu-s", type=int, default=10, help="CPU seconds of all its processes (Affine's: 10)")
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("compare", help="compare evaluation results: table, dominance, Pareto frontier")
    p.add_argument("results", nargs="+", help="metrics/eval/<model>.json files")
    p.add_argument("--rev", help="also read the same files at this git revision (e.g. main)")
    p.add_argument("--rule", choices=["mean", "interval"], default="mean")
    p.set_defaults(func=cmd_compare)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ParamsError, FileNotFoundError, OSError, SandboxUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
