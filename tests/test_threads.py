"""Thread choice at stage start: ``base.num_threads``, OMP_NUM_THREADS and the CPU affinity mask (never the load),
OpenMP's wait policy set before torch loads, params parsed once, all logged."""

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from conftest import HANG_GUARD_S

from affine import stage, threads
from affine.config import ParamsError, parse_params
from affine.stage import setup_logging
from affine.threads import (
    available_cpus,
    choose_threads,
    configure_threads,
    omp_num_threads,
    set_openmp_defaults,
    thread_record,
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


def test_auto_is_omp_num_threads_or_the_affinity_mask_never_the_load(monkeypatch, restore_threads):
    """The same machine and environment give the same count every run (fp32 rounding follows the thread count)."""
    assert choose_threads("auto", {}, cpus=2) == (2, "base.num_threads=auto: the 2 CPUs of the affinity mask")
    assert choose_threads("auto", {}, cpus=16)[0] == 16
    assert choose_threads("auto", {"OMP_NUM_THREADS": "1"}, cpus=2)[0] == 1
    assert choose_threads("auto", {"OMP_NUM_THREADS": "8"}, cpus=2)[0] == 2, "capped at the CPUs allowed"
    assert choose_threads("auto", {"OMP_NUM_THREADS": "3,1"}, cpus=4)[0] == 3, "first nesting level"
    assert available_cpus() == set(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in available_cpus()]
    try:
        assert configure_threads("auto") == len(available_cpus()), "other processes' load does not change it"
    finally:
        for burner in busy:
            burner.kill()
            burner.wait()


@pytest.mark.parametrize("raw", ["", "0", "-2", "two", " "])
def test_a_malformed_omp_num_threads_is_ignored(raw):
    assert omp_num_threads({"OMP_NUM_THREADS": raw}) is None
    assert choose_threads("auto", {"OMP_NUM_THREADS": raw}, cpus=3)[0] == 3


def test_an_explicit_count_is_used_as_given_and_oversubscription_is_said():
    assert choose_threads(1, {"OMP_NUM_THREADS": "2"}, cpus=2) == (1, "base.num_threads=1")
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


def test_stage_start_parses_params_once_sets_and_logs_the_threads(tmp_path, capsys, monkeypatch, restore_threads):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"num_threads": 1}, "sft": {"max_steps": 3}}))
    parses = []
    real_stage_params = stage.stage_params
    monkeypatch.setattr(stage, "stage_params", lambda *s, **kw: parses.append(s) or real_stage_params(*s, **kw))
    seen = []
    stage.run(lambda p: seen.append((torch.get_num_threads(), p.sft.max_steps)), "base", "sft", params_path=params)
    assert seen == [(1, 3)] and parses == [("base", "sft")], "main gets the params parsed once, threads already set"
    assert "torch threads: 1 (base.num_threads=1; OpenMP wait" in capsys.readouterr().err

    params.write_text(yaml.safe_dump({"base": {"num_threads": 0}}))
    with pytest.raises(SystemExit) as exited:
        stage.run(lambda p: seen.append("ran"), "base", params_path=params)
    assert exited.value.code == 2 and seen == [(1, 3)], "bad params stop the stage before its work starts"
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: invalid params: base.num_threads")


def test_openmp_wait_policy_defaults_to_passive_and_the_environment_wins():
    env: dict[str, str] = {}
    set_openmp_defaults(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}):
        env = dict(chosen)
        set_openmp_defaults(env)
        assert env == chosen, "a policy or spin count the user set is kept"
    record = thread_record()
    assert record == {"torch_threads": torch.get_num_threads(), "omp_wait": threads.wait_policy(os.environ),
                      "cpu": threads.cpu_record()}  # fmt: skip


def test_cpu_record_reads_the_first_processor_and_survives_no_cpuinfo():
    info = (
        "processor\t: 0\nmodel name\t: AMD EPYC 9B45\ncpu family\t: 26\nmodel\t\t: 2\nflags\t\t: fpu avx512_bf16\n\n"
        "processor\t: 1\nmodel name\t: Other\ncpu family\t: 1\n"
    )
    record = threads.cpu_record(info)
    assert record["model"] == "AMD EPYC 9B45" and (record["family"], record["model_id"]) == ("26", "2")
    assert record["native_bf16"] is True and record["torch_isa"] == torch.backends.cpu.get_cpu_capability()
    bare = threads.cpu_record("")
    assert bare["model"] == "unknown" and bare["native_bf16"] is False and bare["family"] is None


def test_importing_affine_sets_the_policy_before_torch_loads_openmp():
    """libgomp reads OMP_WAIT_POLICY once, when torch loads it; OMP_DISPLAY_ENV makes it print what it read.

    The spin count is what tells the policies apart: libgomp prints PASSIVE for an unset policy too, but then spins
    300000 times before it sleeps; PASSIVE proper is a spin count of 0."""
    # a clean environment: a stage starts from the user's shell, not from pytest's process (an LD_PRELOAD of libgomp,
    # which vLLM used to leave in os.environ, makes libgomp read its policy before Python runs: affine.engine)
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env |= {"OMP_DISPLAY_ENV": "VERBOSE", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    code = "import affine.threads, torch; torch.ones(64, 64).sum()"  # any affine module runs affine/__init__ first
    seen = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert seen.returncode == 0, seen.stderr[-2000:]
    assert "GOMP_SPINCOUNT = '0'" in seen.stderr, seen.stderr[-2000:]
    torch_first = code.replace("affine.threads, torch", "torch, affine.threads")
    late = subprocess.run(
        [sys.executable, "-c", torch_first], env=env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert late.returncode == 0 and "GOMP_SPINCOUNT = '300000'" in late.stderr, "torch first: libgomp's default"


def test_a_policy_set_after_torch_loaded_is_reported(monkeypatch, caplog, restore_threads):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setattr(threads, "_set_too_late", False)
    set_openmp_defaults()  # torch is loaded in this test process already
    with caplog.at_level(logging.INFO, logger="affine.threads"):
        configure_threads(1)
    assert "torch was imported before affine: OpenMP kept its default wait policy" in caplog.text


def test_export_chooses_and_logs_its_threads(tmp_path, caplog, restore_threads):
    from affine import cli

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"num_threads": 1}}))
    with caplog.at_level(logging.INFO, logger="affine.threads"):
        code = cli.main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--params", str(params)])
    assert code == 2, "no model there"
    assert "torch threads: 1 (base.num_threads=1" in caplog.text
    params.write_text(yaml.safe_dump({"base": {"num_threads": "x"}}))
    assert cli.main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--params", str(params)]) == 2


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
