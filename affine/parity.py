"""``affine parity``: does our env behave like the real AgentGym server, task by task?

Why: a model trained on our envs is scored by the real servers, so every text it reads (first observation, the
feedback to each action) and every success should be the same on both.  This plays the project's scripted expert in
our env and sends the same replies to a running real server through ``HTTPEnv`` (the client a user would evaluate
with), so both sides see identical input; it then counts, per task and in total, whether the first observations are
identical, whether every step's feedback (observation text and done flag) is identical, and whether the episode
succeeds on each side.  No library compares two text environments like this, hence this module.

Task ``k`` of our *train* split is the real server's task ``k`` (the env modules keep that mapping), so parity always
builds the train split; where ids map otherwise (the env module's ``server_task_id``, or the ``data_idx`` the env sets
on reset) the mapped id is played on the server.

"Same lines in any order" is also counted for first observations, because some real servers (TextCraft) shuffle
recipe lines under Python's per-process hash seed and so do not reproduce their own line order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from affine.config import AGENTGYM_ENVS, AgentGymEnvParams, EnvsParams
from affine.envs.agentgym.http import AgentGymResponseError, HTTPEnv
from affine.envs.options import build_env, server_task_map

SHORT_NAMES = tuple(name.split(":", 1)[1] for name in AGENTGYM_ENVS)


def parse_tasks(spec: str, limit: int = 100_000) -> list[int]:
    """``"0-99"``, ``"3"``, ``"0-9,20,30-39"`` → sorted unique task ids; anything else is a one-line ``ValueError``."""
    ids: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        low, sep, high = part.partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise ValueError(f"bad --tasks {spec!r}: use ids and ranges like 0-99 or 0-9,20,30-39") from None
        if first < 0 or last < first:
            raise ValueError(f"bad --tasks {spec!r}: {part!r} must be LOW-HIGH with 0 <= LOW <= HIGH")
        if last - first + 1 + len(ids) > limit:
            raise ValueError(f"bad --tasks {spec!r}: more than {limit} tasks")
        ids.update(range(first, last + 1))
    return sorted(ids)


def env_short_name(name: str) -> str:
    """``babyai`` or ``agentgym:babyai`` → ``babyai``; other names are a one-line ``ValueError``."""
    short = name.split(":", 1)[1] if name.startswith("agentgym:") else name
    if short not in SHORT_NAMES:
        raise ValueError(f"parity compares AgentGym envs: got {name!r}, expected one of {', '.join(SHORT_NAMES)}")
    return short


def local_envs_params(envs: EnvsParams, short: str) -> EnvsParams:
    """``envs`` with ``short`` on its default local backend: parity needs our env even where params point it at a
    server.  The entry is re-validated without ``backend``/``server_url``, so the env's own default applies."""
    p = envs.agentgym.get(short)
    if p is None or p.backend != "agentgym":
        return envs
    kept = {k: v for k, v in p.model_dump(exclude_unset=True).items() if k not in ("backend", "server_url")}
    return envs.model_copy(update={"agentgym": {**envs.agentgym, short: AgentGymEnvParams.model_validate(kept)}})


@dataclass
class TaskParity:
    """One task on both sides.  ``first_diff``/``step_diff``: both texts where the first observation / the first
    differing step's feedback differ (None where identical)."""

    task_id: int
    server_id: int = -1  # the real server's task id played (our task id unless our env maps it)
    first_identical: bool = False
    first_same_lines: bool = False
    steps: int = 0  # steps both sides answered
    steps_identical: int = 0
    ours_success: bool = False
    real_success: bool = False
    ours_score: float = 0.0
    real_score: float = 0.0
    first_diff: dict[str, str] | None = None
    step_diff: dict[str, Any] | None = None
    error: str | None = None

    @property
    def feedback_identical(self) -> bool:
        return self.error is None and self.steps > 0 and self.steps_identical == self.steps

    def line(self) -> str:
        if self.error is not None:
            return f"task {self.task_id}: error: {self.error}"
        first = "identical" if self.first_identical else ("same lines" if self.first_same_lines else "differs")
        steps = f"feedback {self.steps_identical}/{self.steps} steps identical"
        if self.step_diff is not None:
            steps += f" (first difference at turn {self.step_diff['turn']}, action {self.step_diff['action']!r})"
        yes = {True: "yes", False: "no"}
        success = f"success ours {yes[self.ours_success]}, real {yes[self.real_success]}"
        task = f"task {self.task_id}" + (f" (server {self.server_id})" if self.server_id != self.task_id else "")
        return f"{task}: first observation {first} | {steps} | {success}"


def _same_lines(a: str, b: str) -> bool:
    return sorted(line.strip() for line in a.splitlines()) == sorted(line.strip() for line in b.splitlines())


def compare_task(local: Any, remote: Any, task_id: int, task_map: Callable[[int], int] | None = None) -> TaskParity:
    """Reset both envs to ``task_id`` and replay our expert's replies on both until either episode ends.

    The server plays ``task_map(task_id)`` (the env module's ``server_task_id``) when given, else the ``data_idx``
    our env sets on reset, else ``task_id`` itself.

    A step is identical when the observation text and the done flag are; the replay goes on after a difference
    (later steps may agree again) and stops when either side ends its episode or our env's turn limit is reached.
    """
    ours_first = local.reset(task_id)
    server_id = task_map(task_id) if task_map is not None else getattr(local, "data_idx", None)
    record = TaskParity(task_id, server_id=server_id if isinstance(server_id, int) else task_id)
    real_first = remote.reset(record.server_id)
    record.first_identical = ours_first == real_first
    record.first_same_lines = _same_lines(ours_first, real_first)
    if not record.first_identical:
        record.first_diff = {"ours": ours_first, "real": real_first}
    for _ in range(local.max_turns):
        reply = local.expert_reply()
        ours, real = local.step(reply), remote.step(reply)
        record.steps += 1
        same = ours.observation == real.observation and ours.done == real.done
        record.steps_identical += same
        if not same and record.step_diff is None:
            record.step_diff = {
                "turn": record.steps,
                "action": real.info.get("action", ""),
                "ours": ours.observation,
                "real": real.observation,
                "ours_done": ours.done,
                "real_done": real.done,
            }
        record.ours_success, record.real_success = bool(ours.info.get("success")), bool(real.info.get("success"))
        record.ours_score, record.real_score = float(ours.score), float(real.score)
        if ours.done or real.done:
            break
    return record


@dataclass
class ParityReport:
    """Every task's record plus the totals ``affine parity`` prints."""

    env: str
    server_url: str
    tasks: list[TaskParity] = field(default_factory=list)
    seconds: float = 0.0

    def totals(self) -> dict[str, Any]:
        done = [t for t in self.tasks if t.error is None]
        return {
            "tasks": len(self.tasks),
            "errors": len(self.tasks) - len(done),
            "first_identical": sum(t.first_identical for t in done),
            "first_same_lines": sum(t.first_same_lines for t in done),
            "feedback_identical": sum(t.feedback_identical for t in done),
            "steps": sum(t.steps for t in done),
            "steps_identical": sum(t.steps_identical for t in done),
            "ours_success": sum(t.ours_success for t in done),
            "real_success": sum(t.real_success for t in done),
            "both_success": sum(t.ours_success and t.real_success for t in done),
            "seconds": round(self.seconds, 2),
        }

    def summary(self) -> list[str]:
        t = self.totals()
        n = t["tasks"] - t["errors"]
        lines = [
            f"agentgym:{self.env} vs {self.server_url}: {t['tasks']} tasks ({t['errors']} errors), "
            f"{t['seconds']:.1f} s",
            f"first observation identical: {t['first_identical']}/{n} "
            f"(same lines in any order: {t['first_same_lines']}/{n})",
            f"per-step feedback identical: {t['feedback_identical']}/{n} tasks, "
            f"{t['steps_identical']}/{t['steps']} steps",
            f"success: ours {t['ours_success']}/{n}, real {t['real_success']}/{n}, both {t['both_success']}/{n}",
        ]
        return lines

    def records(self) -> list[dict[str, Any]]:
        return [
            {"env": f"agentgym:{self.env}", **asdict(t), "feedback_identical": t.feedback_identical} for t in self.tasks
        ]


def run_parity(
    env: str,
    server_url: str,
    task_ids: list[int],
    envs: EnvsParams | None = None,
    max_turns: int | None = None,
    timeout_s: float = 60.0,
    on_task: Any = None,
) -> ParityReport:
    """Compare our ``env`` (train split, built from ``envs`` as the stages build it) with the server at
    ``server_url`` on ``task_ids``.  ``max_turns`` overrides our env's turn limit (None: as params give it).

    A task the server answers with an error is recorded and the run goes on; an unreachable server stops it
    (``ServerUnavailable``).  ``on_task(record)`` is called after each task (the CLI prints as it goes).
    """
    short = env_short_name(env)
    if not task_ids:
        raise ValueError("no task ids to compare")
    local = build_env(f"agentgym:{short}", local_envs_params(envs or EnvsParams(), short), split="train")
    if max_turns is not None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        local.max_turns = max_turns
    task_map = server_task_map(short, "train")
    report = ParityReport(short, server_url)
    start = time.perf_counter()
    try:
        with HTTPEnv(env=short, server_url=server_url, max_turns=local.max_turns, timeout_s=timeout_s) as remote:
            for task_id in task_ids:
                try:
                    record = compare_task(local, remote, task_id, task_map)
                except AgentGymResponseError as exc:  # this task only (bad index, server-side failure)
                    record = TaskParity(task_id, task_id, error=str(exc))
                report.tasks.append(record)
                if on_task is not None:
                    on_task(record)
    finally:
        report.seconds = time.perf_counter() - start
        close = getattr(local, "close", None)
        if callable(close):
            close()  # e.g. the real ScienceWorld's JVM
    return report
