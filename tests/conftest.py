"""Shared fixtures: the SmolLM2 tokenizer (extracted once from the embedded GGUF) and a tiny random-init Llama.

Unit tests never touch the real 135M weights: a 2-layer, 64-wide model with the real tokenizer exercises every code
path (chat template, masking, generation, LoRA) in milliseconds.
"""

from __future__ import annotations

# affine first: importing it sets OpenMP's wait policy, which libgomp reads once, when torch loads it (affine.threads)
import affine  # noqa: F401

# isort: split
import os
import signal
import subprocess
import time

import pytest
import torch

from affine.threads import configure_threads

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the test process picks its threads the way a stage does (OMP_NUM_THREADS, else the CPUs of the affinity mask)
configure_threads("auto")

# Hang guards for tests that run a stage or a whole pipeline in a subprocess: far above the slowest run seen on a
# loaded 2-core machine (issue 20: load 4-17), so they only end a run that hangs, never one that is merely slow.
HANG_GUARD_S = 3600


def run_guarded(cmd: list[str], timeout: float = HANG_GUARD_S, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` that, on timeout, kills the command's whole process group, not only its first process.

    Why: ``subprocess.run(timeout=...)`` kills just the child it started, so a stage under ``dvc repro`` kept
    training as an orphan for 37 minutes after a test gave up (issue 21). The command runs in a new session; a
    timeout SIGKILLs that session's group and fails the test with the tail of its output.
    """
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    with subprocess.Popen(cmd, start_new_session=True, **_popen_kwargs(kwargs)) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            try:
                stdout, stderr = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:  # something that left the group still holds the pipes open
                stdout, stderr = "", "(no output: a process outside the group kept the pipes open)"
            pytest.fail(f"{cmd[:3]}... hung for {timeout:.0f} s (hang guard), killed:\n{(stderr or '')[-2000:]}")
        except BaseException:
            kill_group(proc)
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _popen_kwargs(kwargs: dict) -> dict:
    out = dict(kwargs)
    if out.pop("capture_output", False):
        out["stdout"] = out["stderr"] = subprocess.PIPE
    return out


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL every process in ``proc``'s group (started with ``start_new_session=True``), then reap ``proc``."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from affine.model import load_tokenizer

    tokenizer = load_tokenizer("embedded:smollm2-135m-instruct")
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: str):
    from affine.model import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def build_tiny_model(vocab_size: int, seed: int = 0, head_dim: int = 16):
    """A random-init 2-layer Llama (grouped query heads: 4 query, 2 key/value) with heads of ``head_dim``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=4 * head_dim,
        intermediate_size=8 * head_dim,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    return LlamaForCausalLM(config)


@pytest.fixture
def tiny_model(tokenizer):
    return build_tiny_model(len(tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> str:
    """A saved tiny checkpoint + tokenizer: what stages load through affine.model.load_model."""
    folder = tmp_path_factory.mktemp("tiny_model")
    build_tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def gone_within(pids: list[int], seconds: float) -> bool:
    """Whether every process in ``pids`` has exited (a zombie counts as exited) within ``seconds``."""
    from affine.reaper import start_time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(start_time(pid) is None for pid in pids):
            return True
        time.sleep(0.1)
    return False
