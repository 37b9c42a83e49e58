"""Thread choice at stage start: ``base.num_threads``, OMP_NUM_THREADS and the CPU affinity mask, logged once."""

import logging
import os
import warnings

import pytest
import torch
import yaml

from affine.config import ParamsError, parse_params
from affine.stage import run, setup_logging
from affine.threads import (
    available_cpus,
    choose_threads,
    cpu_times,
    free_cpus,
    measure_free_cpus,
    omp_num_threads,
)


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def restore_logging():
    """setup_logging replaces the root handlers (as a stage should); give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


STAT_BEFORE = """cpu  300 0 100 1000 0 0 0 0 0 0
cpu0 100 0 50 500 0 0 0 0 0 0
cpu1 200 0 50 500 0 0 0 0 0 0
intr 12345
"""
# over the interval: cpu0 idle 90 of 100 jiffies (a free core), cpu1 idle 5 of 100 (another process keeps it busy)
STAT_AFTER = """cpu  395 0 110 1095 0 0 0 0 0 0
cpu0 105 0 55 590 0 0 0 0 0 0
cpu1 290 0 55 505 0 0 0 0 0 0
intr 12399
"""


def test_free_cpus_reads_per_cpu_idle_share_from_proc_stat():
    before, after = cpu_times(STAT_BEFORE), cpu_times(STAT_AFTER)
    assert before == {0: (500, 650), 1: (500, 750)}
    assert free_cpus({0, 1}, before, after) == pytest.approx(0.95)
    assert free_cpus({1}, before, after) == pytest.approx(0.05), "only the CPUs in the affinity mask count"
    assert free_cpus({0, 7}, before, after) == pytest.approx(0.9), "a CPU missing from /proc/stat is skipped"
    measured = measure_free_cpus(available_cpus(), seconds=0.05)
    assert measured is None or 0.0 <= measured <= len(available_cpus())


def test_auto_uses_the_free_cpus_unless_omp_num_threads_says_otherwise():
    assert choose_threads("auto", {}, cpus=2, free=1.9) == (
        2,
        "base.num_threads=auto: 1.9 of 2 allowed CPUs idle at start",
    )
    assert choose_threads("auto", {}, cpus=2, free=1.6)[0] == 1, "a core idle only 60 % is not free"
    assert choose_threads("auto", {}, cpus=2, free=0.0)[0] == 1, "at least one thread on a fully busy machine"
    assert choose_threads("auto", {}, cpus=16, free=15.8)[0] == 16
    assert choose_threads("auto", {}, cpus=2, free=None)[0] == 2, "load unknown: every allowed CPU"
    assert choose_threads("auto", {"OMP_NUM_THREADS": "1"}, cpus=2, free=2.0)[0] == 1
    assert choose_threads("auto", {"OMP_NUM_THREADS": "8"}, cpus=2, free=0.0)[0] == 2, "capped at the CPUs allowed"
    assert choose_threads("auto", {"OMP_NUM_THREADS": "3,1"}, cpus=4)[0] == 3, "first nesting level"
    assert available_cpus() == set(os.sched_getaffinity(0))


@pytest.mark.parametrize("raw", ["", "0", "-2", "two", " "])
def test_a_malformed_omp_num_threads_is_ignored(raw):
    assert omp_num_threads({"OMP_NUM_THREADS": raw}) is None
    assert choose_threads("auto", {"OMP_NUM_THREADS": raw}, cpus=3, free=3.0)[0] == 3


def test_an_explicit_count_is_used_as_given_and_oversubscription_is_said():
    assert choose_threads(1, {"OMP_NUM_THREADS": "2"}, cpus=2, free=2.0) == (1, "base.num_threads=1")
    threads, why = choose_threads(4, {}, cpus=2)
    assert threads == 4 and "more than the 2 available CPUs" in why
    for bad in (0, -1, True, "2"):
        with pytest.raises(ValueError, match="'auto' or a positive integer"):
            choose_threads(bad, {}, cpus=2)


@pytest.mark.parametrize("value", [0, -1, "2", "many", True, 1.5, None])
def test_bad_num_threads_param_is_one_line(value):
    with pytest.raises(ParamsError) as info:
        parse_params({"base": {"num_threads": value}})
    assert "base.num_threads" in str(info.value) and "'auto' or a positive integer" in str(info.value)
    assert "\n" not in str(info.value)
    assert parse_params({"base": {"num_threads": 3}}).base.num_threads == 3
    assert parse_params({}).base.num_threads == "auto"


def test_stage_start_sets_and_logs_the_threads(tmp_path, capsys, restore_threads):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"num_threads": 1}}))
    seen = []
    run(lambda: seen.append(torch.get_num_threads()), params_path=str(params))
    assert seen == [1]
    assert "torch threads: 1 (base.num_threads=1)" in capsys.readouterr().err

    params.write_text(yaml.safe_dump({"base": {"num_threads": 0}}))
    with pytest.raises(SystemExit) as exited:
        run(lambda: seen.append("ran"), params_path=str(params))
    assert exited.value.code == 2 and seen == [1], "bad params stop the stage before its work starts"
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: invalid params: base.num_threads")


def test_the_deprecated_checkpointing_name_peft_probes_is_not_logged():
    """peft reads `is_gradient_checkpointing` on every model it wraps; stage logs must not repeat that warning."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    model = LlamaForCausalLM(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setup_logging()
        get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert not [w for w in caught if "checkpointing" in str(w.message)], [str(w.message) for w in caught]
