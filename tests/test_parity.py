"""``affine parity``: our env's expert replayed on a server, with a toy env on both sides (see ``agentgym_fake``)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agentgym_fake import Walk, serve, walk_route

from affine import parity
from affine.cli import main
from affine.config import parse_params
from affine.envs.agentgym.http import HTTPEnv


def _server(twist: int | None = None, far: int = 0) -> Iterator[tuple[str, Any]]:
    route = walk_route(twist, far)
    for url, server in serve(route):
        server.walk = route
        yield url, server


@pytest.fixture
def plain() -> Iterator[tuple[str, Any]]:
    yield from _server()


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> list[Walk]:
    """Our env in parity becomes a ``Walk``; the list holds every one built."""
    built: list[Walk] = []

    def build(name: str, envs: Any, split: str) -> Walk:
        assert name == "agentgym:babyai" and split == "train"
        built.append(Walk())
        return built[-1]

    monkeypatch.setattr(parity, "build_env", build)
    return built


@pytest.mark.parametrize(
    ("spec", "ids"), [("0-3", [0, 1, 2, 3]), ("7", [7]), ("0-1, 5,3-4", [0, 1, 3, 4, 5]), ("2,2,1-2", [1, 2])]
)
def test_task_specs(spec: str, ids: list[int]) -> None:
    assert parity.parse_tasks(spec) == ids


@pytest.mark.parametrize("spec", ["", "a-b", "5-2", "-3", "1-", "0-99999999", "1;2"])
def test_bad_task_specs_are_one_line(spec: str) -> None:
    with pytest.raises(ValueError, match="bad --tasks") as info:
        parity.parse_tasks(spec)
    assert "\n" not in str(info.value)


def test_env_names() -> None:
    assert parity.env_short_name("agentgym:sciworld") == parity.env_short_name("sciworld") == "sciworld"
    for bad in ("affine:sat", "minecraft", "agentgym:"):
        with pytest.raises(ValueError, match="parity compares AgentGym envs"):
            parity.env_short_name(bad)


def test_identical_envs_agree_everywhere(plain: tuple[str, Any]) -> None:
    url, _ = plain
    with HTTPEnv(env="babyai", server_url=url, backoff_s=0.01) as remote:
        record = parity.compare_task(Walk(), remote, 4)  # goal 3: three forward steps
    assert record.first_identical and record.first_same_lines and record.feedback_identical
    assert (record.steps, record.steps_identical) == (3, 3) and record.first_diff is None and record.step_diff is None
    assert record.ours_success and record.real_success and record.ours_score == record.real_score == pytest.approx(0.7)


def test_an_env_that_maps_ids_plays_the_mapped_id(plain: tuple[str, Any]) -> None:
    class Shifted(Walk):
        def reset(self, task_id: int) -> str:
            self.data_idx = task_id + 1  # our task k is the server's k + 1
            return super().reset(self.data_idx)

    url, _ = plain
    with HTTPEnv(env="babyai", server_url=url, backoff_s=0.01) as remote:
        record = parity.compare_task(Shifted(), remote, 4)
    assert record.server_id == 5 and record.first_identical and record.feedback_identical
    assert record.line().startswith("task 4 (server 5): first observation identical")
    with HTTPEnv(env="babyai", server_url=url, backoff_s=0.01) as remote:
        assert parity.compare_task(Walk(), remote, 4).line().startswith("task 4: first")
        record = parity.compare_task(Walk(), remote, 4, task_map=lambda k: k + 4)  # the module's map wins
    assert record.server_id == 8 and not record.first_identical  # server task 8 has another goal


@pytest.mark.parametrize("twist", [0, 2])
def test_a_difference_is_found_where_it_is(twist: int) -> None:
    for url, _ in _server(twist):
        with HTTPEnv(env="babyai", server_url=url, backoff_s=0.01) as remote:
            record = parity.compare_task(Walk(), remote, 4)
    assert record.first_identical is (twist != 0) and record.feedback_identical is (twist == 0)
    if twist == 0:
        assert record.first_diff is not None and record.first_diff["real"].endswith("(reworded)")
        assert record.step_diff is None and record.steps_identical == 3
    else:
        assert record.first_diff is None and record.steps_identical == 2  # turns 1 and 3 agree, turn 2 does not
        assert record.step_diff is not None and record.step_diff["turn"] == 2
        assert (
            record.step_diff["action"] == "move forward" and record.step_diff["real"] == "You are at cell 2. (reworded)"
        )
    assert record.ours_success and record.real_success


def test_run_parity_totals_and_closes_both_sides(local: list[Walk]) -> None:
    for url, server in _server(twist=3):  # goals of tasks 0..5: 2 3 4 2 3 4; turn 3 differs where it is reached
        report = parity.run_parity("agentgym:babyai", url, [0, 1, 2, 3, 4, 5, 1000], max_turns=20)
        assert server.walk.created and server.walk.closed == server.walk.created
    totals = report.totals()
    assert totals["tasks"] == 7 and totals["errors"] == 1 and "out of range" in str(report.tasks[-1].error)
    assert totals["first_identical"] == 6 and totals["feedback_identical"] == 2  # the two tasks with goal 2
    assert totals["steps"] == 2 + 3 + 4 + 2 + 3 + 4 and totals["steps_identical"] == totals["steps"] - 4
    assert totals["ours_success"] == totals["real_success"] == totals["both_success"] == 6
    assert local[0].closed
    summary = report.summary()
    assert summary[1] == "first observation identical: 6/6 (same lines in any order: 6/6)"
    assert summary[2] == "per-step feedback identical: 2/6 tasks, 14/18 steps"
    assert summary[3] == "success: ours 6/6, real 6/6, both 6/6"


def test_the_turn_limit_applies_to_both_sides(local: list[Walk]) -> None:
    for url, _ in _server():
        report = parity.run_parity("babyai", url, [2], max_turns=3)  # goal 4 needs 4 steps
    (record,) = report.tasks
    assert record.steps == 3 and not record.ours_success and not record.real_success
    assert record.feedback_identical  # both sides gave the same three answers and stopped together


def test_success_on_one_side_only_is_counted(local: list[Walk]) -> None:
    for url, _ in _server(far=1):  # the real goal is one cell further: our expert stops one step short there
        report = parity.run_parity("babyai", url, [0, 1])
    assert report.totals()["ours_success"] == 2 and report.totals()["real_success"] == 0
    assert report.totals()["both_success"] == 0 and report.totals()["first_identical"] == 0
    record = report.tasks[0]
    assert record.step_diff is not None and record.step_diff["ours_done"] and not record.step_diff["real_done"]
    assert "success ours yes, real no" in record.line()


def test_cli_prints_per_task_and_totals_and_writes_jsonl(
    local: list[Walk], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "parity.jsonl"
    for url, _ in _server(twist=0):
        code = main(["parity", "babyai", "--server-url", url, "--tasks", "0-2", "--diffs", "--out", str(out)])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    assert printed[0].startswith("task 0: first observation differs | feedback 2/2 steps identical | success ours yes")
    assert printed[1] == "  first observation ours: 'Your goal: reach cell 2\\nYou are at cell 0.'"
    assert printed[-3:] == [
        "first observation identical: 0/3 (same lines in any order: 0/3)",
        "per-step feedback identical: 3/3 tasks, 9/9 steps",
        "success: ours 3/3, real 3/3, both 3/3",
    ]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == [0, 1, 2] and rows[0]["env"] == "agentgym:babyai"
    assert rows[0]["first_diff"]["real"].endswith("(reworded)") and rows[0]["feedback_identical"]


def test_cli_bad_input_is_one_line(local: list[Walk], capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cases = [
        (
            ["parity", "babyai", "--server-url", f"http://127.0.0.1:{port}", "--tasks", "0", "--timeout", "1"],
            "unreachable",
        ),
        (["parity", "babyai", "--server-url", "http://127.0.0.1:9", "--tasks", "3-1"], "bad --tasks"),
        (["parity", "affine:sat", "--server-url", "http://127.0.0.1:9"], "parity compares AgentGym envs"),
        (["parity", "babyai", "--server-url", "http://127.0.0.1:9", "--max-turns", "0"], "max_turns must be >= 1"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err


def test_our_env_is_local_even_where_params_point_it_at_a_server() -> None:
    envs = parse_params({"envs": {"agentgym": {"textcraft": {"backend": "agentgym", "difficulty": 2}}}}).envs
    local = parity.local_envs_params(envs, "textcraft").agentgym["textcraft"]
    assert local.backend is None and local.difficulty == 2
    assert parity.local_envs_params(envs, "babyai") is envs
