"""The ``affine`` command: inspect and debug environments without running the pipeline.

``affine envs`` · ``affine sample ENV --seed N --n K`` · ``affine score ENV --challenge F --response F`` ·
``affine play ENV --seed N`` · ``affine sandbox run PROGRAM.py [--stdin F]`` · ``affine compare RESULTS.json…`` ·
``affine parity ENV --server-url URL --tasks 0-99`` (our env vs a running real AgentGym server) ·
``affine export MODEL_DIR --out DIR [--merge] [--eval RESULTS.json…]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from affine.config import EnvsParams, ParamsError
from affine.envs.base import available, env_names, is_single_turn
from affine.envs.options import build_env
from affine.eval.metrics import RULES
from affine.sandbox import SandboxUnavailable
from affine.stage import stage_params


def _params_file(path: str | None) -> str:
    """``--params FILE``; without it ``./params.yaml`` when there is one (so a challenge looks like the pipeline's
    own), else ``none``: the built-in defaults (``--params none`` forces them)."""
    if path is None:
        return "params.yaml" if Path("params.yaml").is_file() else "none"
    return path


def _envs_params(path: str | None) -> EnvsParams:
    """The ``envs`` section of :func:`_params_file`'s choice; only ``envs`` must be valid."""
    path = _params_file(path)
    return EnvsParams() if path == "none" else stage_params("envs", path=path).envs


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
    """The ``sandbox`` section of :func:`_params_file`'s choice, checked before anything runs."""
    from affine.config import SandboxParams
    from affine.sandbox import configure

    path = _params_file(params_path)
    sandbox = SandboxParams() if path == "none" else stage_params("sandbox", path=path).sandbox
    configure(**sandbox.model_dump())


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

    order = [name.strip() for name in args.order.split(",")] if args.order else None
    print(main_compare(args.results, args.rev, args.rule, order))
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    from affine.parity import parse_tasks, run_parity

    task_ids = parse_tasks(args.tasks)

    def show(record: Any) -> None:
        print(record.line(), flush=True)
        if args.diffs:
            for what, diff in (("first observation", record.first_diff), ("step", record.step_diff)):
                if diff is not None:
                    print(
                        f"  {what} ours: {diff['ours'][: args.diffs]!r}\n  {what} real: {diff['real'][: args.diffs]!r}"
                    )

    report = run_parity(
        args.env, args.server_url, task_ids, _envs_params(args.params), args.max_turns, args.timeout, on_task=show
    )
    print("\n".join(report.summary()))
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in report.records()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from affine.export import export_model
    from affine.stage import setup_logging
    from affine.threads import configure_threads

    # a pipeline stage too: merging folds the LoRA in with fp32 matmuls, whose rounding follows the thread count,
    # so the threads are chosen and logged as in every stage (force=False: a caller's logging, e.g. pytest's, stays)
    setup_logging(force=False)
    params_file = _params_file(args.params)
    configure_threads("auto" if params_file == "none" else stage_params("base", path=params_file).base.num_threads)
    results = {}
    for path in args.eval or []:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--eval {path}: no such results file")
        results[Path(path).stem] = json.loads(Path(path).read_text())
    out = export_model(args.model, args.out, results, merge=args.merge, name=args.name)
    print(f"exported {args.model} to {out} ({'merged weights' if args.merge else 'as is'}, model card README.md)")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="affine", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("envs", help="list environments").set_defaults(func=cmd_envs)

    def env_command(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("env", choices=env_names())
        p.add_argument(
            "--params",
            help="read env options (the envs section) from this file; default: ./params.yaml when it exists, else "
            "built-in defaults; 'none': built-in defaults",
        )
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
    p.add_argument("results", nargs="+", help="metrics/eval/<model>.json or data/eval/<model>.jsonl (per task) files")
    p.add_argument("--rev", help="also read the same files at this git revision (e.g. main)")
    p.add_argument("--rule", choices=list(RULES), default="mean", help="threshold, challenger: the validator's rules")
    p.add_argument("--order", help="model names, earliest first, comma-separated (ordered rules; default: input order)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("parity", help="replay our expert on a real AgentGym server: observations, feedback, success")
    p.add_argument("env", help="babyai, textcraft, sciworld, alfworld or webshop (agentgym: prefix optional)")
    p.add_argument("--server-url", required=True, help="the running real server, e.g. http://127.0.0.1:36001")
    p.add_argument("--tasks", default="0-99", help="task ids: 0-99, 5, 0-9,20 (our train split = the real ids)")
    p.add_argument("--params", help="build our env from this params.yaml (default ./params.yaml; none: defaults)")
    p.add_argument("--max-turns", type=int, help="turn limit (default: our env's, AgentGym's round limit)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    p.add_argument("--diffs", type=int, nargs="?", const=400, default=0, help="print the first differing texts")
    p.add_argument("--out", help="write one JSON line per task (both texts of each first difference)")
    p.set_defaults(func=cmd_parity)

    p = sub.add_parser("export", help="a trained model + model card, ready to upload to the Hugging Face Hub")
    p.add_argument("model", help="a model folder: models/rl, models/sft (adapters) or a full model")
    p.add_argument("--out", required=True, help="output folder (replaced if it holds an earlier export)")
    p.add_argument("--merge", action="store_true", help="fold the LoRA into the base weights (a plain checkpoint)")
    p.add_argument("--eval", nargs="*", help="metrics/eval/<model>.json files whose scores go into the card")
    p.add_argument("--name", help="the model's name in the card (default: affine-<folder name>)")
    p.add_argument("--params", help="base.num_threads from this params.yaml (default ./params.yaml; none: auto)")
    p.set_defaults(func=cmd_export)
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
