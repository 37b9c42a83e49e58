"""ABD: Affine's answer parsing and scoring on tricky replies, offline sampling, and rows from local files."""

from __future__ import annotations

import json

import pytest

from affine.envs.abd import ABD, extract_input, input_is_plausible, outputs_match
from affine.envs.base import SingleTurnTask, make
from affine.sandbox import Limits

SUM = {"program": "a = int(input())\nb = int(input())\nprint(a + b)\n", "expected_output": "5\n", "inputs": "2\n3\n"}
LOOP = {"program": "for _ in range(int(input())):\n    print(input()[::-1])\n", "expected_output": "cba\nfed\n"}


@pytest.fixture(scope="module")
def abd() -> ABD:
    return ABD(limits=Limits(wall_s=5.0))


def test_is_a_registered_single_turn_task(abd):
    assert isinstance(abd, SingleTurnTask) and abd.name == "affine:abd"
    assert isinstance(make("affine:abd", difficulty=2), ABD)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("<INPUT>\n2\n3\n</INPUT>", 1.0),
        ("I think it is\n<INPUT>\n1\n1\n</INPUT>\nno wait:\n<INPUT>\n2\n3\n</INPUT>", 1.0),  # the last block counts
        ("<INPUT>\n2\n3\n</INPUT> on second thought <INPUT>\n1\n1\n</INPUT>", 0.0),
        ("<think>maybe <INPUT>\n9\n9\n</INPUT></think>\n<INPUT>\n4\n1\n</INPUT>", 1.0),
        ("<INPUT>\n4\n1\n</INPUT>\n<thinking>or <INPUT>\n9\n9\n</INPUT></thinking>", 1.0),  # think blocks dropped
        ("<think>the answer: <INPUT>\n2\n3\n</INPUT></think>", 0.0),  # only inside a think block: no input left
        ("<input>\n2\n3</input>", 1.0),  # tags are case-insensitive
        ("<INPUT>\n  2   \n3\t\n\n\n</INPUT>", 1.0),  # trailing spaces and blank lines
        ("<INPUT>\r\n2\r\n3\r\n</INPUT>", 1.0),  # CRLF
        ("<INPUT>\n-1\n6\n</INPUT>", 1.0),  # any input that works, not only the row's
        ("<INPUT>\n2\n4\n</INPUT>", 0.0),
        ("<INPUT>5</INPUT>", 0.0),  # fewer lines than input() calls: rejected before running
        ("<INPUT>\nx = 2\ny = 3\n</INPUT>", 0.0),  # prefixes crash int(): stderr
        ("2\n3", 0.0),  # no tags
        ("<INPUT>\n2\n3\n", 0.0),  # unclosed
        ("", 0.0),
        ("\x00\x01 garbage ``` <INPUT", 0.0),
    ],
)
def test_scores_tricky_replies(abd, reply, expected):
    assert abd.score(SUM, reply) == expected


def test_non_string_and_malformed_inputs_score_zero_without_raising(abd):
    assert abd.score(SUM, None) == 0.0  # type: ignore[arg-type]
    assert abd.score({"program": SUM["program"]}, "<INPUT>\n2\n3\n</INPUT>") == 0.0  # no expected_output
    assert abd.score({}, "<INPUT>1</INPUT>") == 0.0


def test_any_stderr_scores_zero_even_with_the_right_output(abd):
    noisy = {"program": "import sys\nx = input()\nprint('note', file=sys.stderr)\nprint(x)\n", "expected_output": "7\n"}
    assert abd.score(noisy, "<INPUT>\n7\n</INPUT>") == 0.0
    quiet = dict(noisy, program="x = input()\nprint(x)\n")
    assert abd.score(quiet, "<INPUT>\n7\n</INPUT>") == 1.0


def test_the_loop_rule_counts_lines_after_the_count(abd):
    assert abd.score(LOOP, "<INPUT>\n2\nabc\ndef\n</INPUT>") == 1.0
    assert abd.score(LOOP, "<INPUT>\n2\nabc\n</INPUT>") == 0.0  # 2 lines is not more than 2
    assert not input_is_plausible(LOOP["program"], "3\nabc\ndef")
    assert input_is_plausible(LOOP["program"], "x\ny")  # first line not a digit: the input() count rule (2 calls)
    assert input_is_plausible("print(1)\n", "")


def test_empty_tags_are_an_answer_for_a_program_without_input(abd):
    assert abd.score({"program": "print(42)\n", "expected_output": "42\n"}, "<INPUT></INPUT>") == 1.0


def test_timeouts_score_zero():
    slow = ABD(limits=Limits(wall_s=0.5))
    assert (
        slow.score({"program": "x = input()\nwhile True:\n    pass\n", "expected_output": "1\n"}, "<INPUT>1</INPUT>")
        == 0
    )


def test_extract_input_rules():
    assert extract_input("a <INPUT> 1 \n 2  \n\n</INPUT>") == "1\n 2"
    assert extract_input("<THINK><INPUT>9</INPUT></THINK>") == "9"  # think stripping is case-sensitive, as in Affine
    assert extract_input("nothing") == ""


def test_empty_input_is_fed_as_empty_stdin(abd):
    """The validator feeds ``""`` for an empty <INPUT> block (a newline is appended only to non-empty input)."""
    challenge = {"program": "import sys\nprint(len(sys.stdin.read()))\n", "expected_output": "0\n"}
    assert abd.score(challenge, "<INPUT>\n</INPUT>") == 1.0  # validator: 1 (we used to feed "\n" and print 1)
    assert abd.score(challenge, "<INPUT></INPUT>") == 1.0
    assert abd.score(dict(challenge, expected_output="2\n"), "<INPUT>\nx\n</INPUT>") == 1.0  # "x" + the newline
    assert abd.score(challenge, "no tags at all") == 0.0


def test_output_comparison_steps():
    assert outputs_match("1\n2\n", "1\n2\n")
    assert outputs_match("1\r\n2\r\n", "\n1\n2")  # after strip and CRLF->LF
    assert outputs_match("1  \n2\n", "1\n2   \n")  # line by line, right-stripped
    assert not outputs_match("1\n2\n", "1\n\n2\n")
    assert not outputs_match("1 2", "1  2")


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_offline_challenges_are_solved_by_their_solution(difficulty):
    task = ABD(difficulty=difficulty)
    for seed in range(3):
        challenge = task.sample(seed)
        assert set(challenge) >= {"env", "task_id", "prompt", "program", "expected_output"}
        assert challenge == task.sample(seed)  # deterministic
        assert json.loads(json.dumps(challenge)) == challenge
        assert "<INPUT>" in challenge["prompt"] and challenge["program"].rstrip() in challenge["prompt"]
        assert task.score(challenge, task.solution(challenge)) == 1.0
        assert task.score(challenge, "<INPUT>\n</INPUT>") == 0.0


def test_rows_from_a_local_file_run_the_program_for_the_expected_output(tmp_path):
    rows = [
        {"program": "print(int(input()) * 3)", "inputs": "4", "output": "stale\n", "prompt": "p", "test_cases": "{}"},
        {
            "program": "raise SystemExit('boom')",
            "inputs": "",
            "output": "from the row\n",
            "prompt": "p",
            "test_cases": "",
        },
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = ABD(source="files", dataset=[str(path)], split="all", buffer_size=2)  # seeds 0 and 1: both rows
    by_id = {c["row_index"]: c for c in (task.sample(s) for s in range(2))}
    assert by_id[0]["task_id"] == "abd-all-0"  # real rows: the row index
    assert set(by_id) == {0, 1}
    assert by_id[0]["expected_output"] == "12\n"  # computed by running, not the row's stale output
    assert by_id[1]["expected_output"] == "from the row\n"  # the run failed: the row's output is used
    assert task.score(by_id[0], task.solution(by_id[0])) == 1.0


def test_train_and_eval_challenges_never_share_a_program():
    train, evals = ABD(split="train"), ABD(split="eval")
    train_programs = {train.sample(seed)["program"] for seed in range(60)}
    eval_challenges = [evals.sample(seed) for seed in range(60)]
    assert not train_programs & {c["program"] for c in eval_challenges}
    assert all(c["task_id"].startswith("abd-eval-") for c in eval_challenges)
    assert evals.score(eval_challenges[0], evals.solution(eval_challenges[0])) == 1.0
