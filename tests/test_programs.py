"""The offline corpus (affine.envs.programs) and the rl-python row sources (affine.envs.rl_python)."""

from __future__ import annotations

import collections
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from affine.envs import programs, rl_python
from affine.envs.ded import parse_test_cases
from affine.envs.programs import FAMILIES, generate_corpus, split_of, verify_rows
from affine.envs.rl_python import DatasetUnavailable, RowSource, buffered_index, load_hub, load_local
from affine.sandbox import run_many

SCHEMA = {"program", "inputs", "output", "prompt", "test_cases", "row_id", "family", "difficulty", "split"}


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return generate_corpus(seed=0, n=300)


def test_rows_have_the_rl_python_schema(corpus):
    for row in corpus:
        assert set(row) >= SCHEMA and row["difficulty"] in (1, 2, 3) and row["family"] in FAMILIES
        cases = json.loads(row["test_cases"])["test_cases"]
        assert cases == parse_test_cases(row) and len(cases) == programs.N_CASES
        assert all(c["type"] == "stdin_stdout" and c["fn_name"] is None for c in cases)
        assert (cases[0]["input"], cases[0]["output"]) == (row["inputs"], row["output"])
        assert len({c["input"] for c in cases}) == len(cases) and row["output"].strip()
        assert row["split"] == split_of(row["program"]) and row["inputs"] in row["prompt"]


def test_a_few_hundred_distinct_programs_across_all_families(corpus):
    assert len({row["program"] for row in corpus}) == len({row["row_id"] for row in corpus}) == 300
    per_family = collections.Counter(row["family"] for row in corpus)
    assert set(per_family) == set(FAMILIES) and min(per_family.values()) >= 35, per_family
    assert set(collections.Counter(row["difficulty"] for row in corpus)) == {1, 2, 3}
    assert max(len(row["program"].splitlines()) for row in corpus) <= 10  # short, for a 135M model


def test_deterministic_in_the_seed_and_different_across_seeds(corpus):
    assert generate_corpus(seed=0, n=300) == corpus
    other = generate_corpus(seed=1, n=300)
    assert other != corpus and len({r["program"] for r in other} - {r["program"] for r in corpus}) > 50


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_difficulty_and_family_filters(difficulty):
    rows = generate_corpus(seed=3, n=60, difficulty=difficulty, split="train")
    assert {r["difficulty"] for r in rows} == {difficulty} and {r["split"] for r in rows} == {"train"}
    loops = generate_corpus(seed=3, n=20, difficulty=difficulty, families=["loops"])
    assert {r["family"] for r in loops} == {"loops"}


def test_train_and_eval_are_disjoint_by_construction():
    train = generate_corpus(seed=0, n=400, split="train")
    evals = [generate_corpus(seed=s, n=80, split="eval") for s in (0, 7)]
    train_programs = {r["program"] for r in train}
    for rows in evals:
        assert {r["split"] for r in rows} == {"eval"} and not train_programs & {r["program"] for r in rows}
    assert 0.1 < sum(split_of(r["program"]) == "eval" for r in generate_corpus(0, 300)) / 300 < 0.3


def test_verification_rejects_wrong_outputs_and_crashing_programs(corpus):
    good = corpus[:3]
    wrong = dict(good[0], test_cases=good[0]["test_cases"].replace(json.dumps(good[0]["output"]), json.dumps("nope\n")))
    crash = dict(good[1], program="raise ValueError('x')\n")
    assert verify_rows([*good, wrong, crash]) == [True, True, True, False, False]


def test_verified_rows_pass_when_each_case_runs_as_its_own_process(corpus):
    sample = corpus[::50]  # the harness verification must agree with real, one-process-per-case runs
    jobs = [(r["program"], c["input"]) for r in sample for c in json.loads(r["test_cases"])["test_cases"]]
    expected = [c["output"] for r in sample for c in json.loads(r["test_cases"])["test_cases"]]
    results = run_many(jobs)
    assert [(r.stdout, r.stderr) for r in results] == [(e, "") for e in expected]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown program families"):
        generate_corpus(0, 5, families=["poetry"])
    with pytest.raises(ValueError, match="unknown split"):
        generate_corpus(0, 5, split="test")
    with pytest.raises(ValueError, match="difficulty"):
        generate_corpus(0, 5, difficulty=4)
    with pytest.raises(ValueError, match="distinct programs"):
        generate_corpus(0, 100, difficulty=1, families=["strings"])


# ------------------------------------------------------------------------------------------------ rl_python
def _real_rows(n: int = 12) -> list[dict]:
    """Rows in the exact schema of satpalsr/rl-python (test_cases a JSON string)."""
    rows = []
    for i in range(n):
        case = {"type": "stdin_stdout", "input": f"{i}\n", "output": f"{i * 3}\n", "fn_name": None}
        program, prompt = f"print(int(input()) * 3)  # {i}", f"Print three times the number ({i})."
        cases = json.dumps({"test_cases": [case]})
        rows.append(
            {
                "program": program,
                "inputs": case["input"],
                "output": case["output"],
                "prompt": prompt,
                "test_cases": cases,
            }
        )
    return rows


@pytest.mark.parametrize("suffix", ["jsonl", "json", "parquet", "folder"])
def test_local_files_in_the_real_schema_load(tmp_path, suffix):
    rows = _real_rows()
    path = tmp_path / f"rows.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == "json":
        path.write_text(json.dumps({"train": rows}))
    elif suffix == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.mkdir()
        (path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
        pq.write_table(pa.Table.from_pylist(rows[5:]), path / "b.parquet")
    assert load_local(path) == rows == load_local([str(path)])


def test_real_rows_are_addressed_by_row_index_and_split_disjointly(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _real_rows(40)))
    source = RowSource("files", files=[path], split="all", buffer_size=4)
    assert [source.row(seed)[0] for seed in range(45)] == [*range(40), *range(5)]  # task k = row k; wraps past the end
    assert source.row(7)[1]["program"].endswith("# 7") and len(source) == 40
    train, evals = RowSource("files", files=[path], split="train"), RowSource("files", files=[path], split="eval")
    train_ids = [train.row(s)[0] for s in range(len(train))]
    eval_ids = [evals.row(s)[0] for s in range(len(evals))]
    assert train_ids == sorted(train_ids) and eval_ids == sorted(eval_ids)  # the split's rows in row order
    assert eval_ids and not set(train_ids) & set(eval_ids) and sorted(train_ids + eval_ids) == list(range(40))
    assert all(split_of(source.row(i)[1]["program"]) == "eval" for i in eval_ids)
    with pytest.raises(ValueError, match="non-negative"):
        source.row(-1)


def test_the_offline_corpus_keeps_the_buffered_draw():
    source = RowSource("offline", split="all", buffer_size=4, corpus_size=40)
    ids = [source.row(seed)[0] for seed in range(8)]
    n = len(source)
    assert ids[1:4] == [(ids[0] + k) % n for k in (1, 2, 3)] and ids[5:8] == [(ids[4] + k) % n for k in (1, 2, 3)]
    assert all(0 <= buffered_index(s, 7, 5) < 7 for s in range(50))


def test_missing_or_wrong_local_data_raises_one_clear_error(tmp_path):
    with pytest.raises(DatasetUnavailable, match="no rl-python rows"):
        load_local(tmp_path / "absent.jsonl")
    with pytest.raises(DatasetUnavailable, match="no rl-python rows"):
        len(RowSource("files", files=[str(tmp_path)], split="all"))  # an empty folder
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(DatasetUnavailable, match="missing"):
        load_local(bad)
    with pytest.raises(ValueError, match="needs `files`"):
        RowSource("files")
    with pytest.raises(ValueError, match="unknown rl-python source"):
        RowSource("s3")


def test_unreachable_hub_raises_a_one_line_value_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'AffineFoundation/rl-python' on the Hub (LocalEntryNotFoundError)\n...")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ValueError) as info:
        load_hub("AffineFoundation/rl-python")
    assert isinstance(info.value, DatasetUnavailable) and info.value.__cause__ is None
    message = str(info.value)
    assert "\n" not in message and "source: offline" in message and "AffineFoundation/rl-python" in message
    with pytest.raises(DatasetUnavailable):
        len(RowSource("hub", split="all"))
    assert rl_python.DEFAULT_DATASET == "AffineFoundation/rl-python"
