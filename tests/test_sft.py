"""SFT wiring on the tiny model: label mask, LR schedule end value, best checkpoint, resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, kill_group, run_guarded

from affine.config import parse_params
from affine.envs.sat import SAT
from affine.sft import latest_checkpoint, split_examples, train_sft

SFT = {
    "lora_r": 4,
    "lora_alpha": 8,
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "warmup_steps": 1,
    "eval_steps": 2,
    "save_steps": 2,
    "logging_steps": 1,
    "gradient_checkpointing": False,
    "max_length": 256,
    "learning_rate": 1.0e-3,
}


def write_examples(path: Path, n: int = 24) -> Path:
    env = SAT(n_vars=[3, 3], k=[2, 2], clause_ratio=1.0)
    with open(path, "w") as handle:
        for seed in range(n):
            c = env.sample(seed)
            messages = [
                {"role": "user", "content": c["prompt"]},
                {"role": "assistant", "content": env.solution(c)},
            ]
            handle.write(json.dumps({"messages": messages, "env": c["env"], "task_id": c["task_id"]}) + "\n")
    return path


def params(**sft):
    return parse_params({"base": {"seed": 0}, "sft": {**SFT, **sft}})


def test_split_is_seeded_and_disjoint():
    rows = [{"i": i} for i in range(50)]
    train, val = split_examples(rows, 0.1, seed=3)
    assert len(val) == 5 and len(train) == 45
    assert {r["i"] for r in train}.isdisjoint({r["i"] for r in val})
    assert split_examples(rows, 0.1, seed=3) == (train, val)
    with pytest.raises(ValueError, match="at least 2"):
        split_examples(rows[:1], 0.1, seed=0)


@pytest.mark.parametrize("ack_loss", [None, False])
def test_label_mask_is_exactly_the_assistant_tokens(tiny_model_dir, tokenizer, tmp_path, ack_loss):
    """Multi-turn: every assistant turn (with its <|im_end|>) is trained, instructions and observations never, and
    an assistant turn marked ``"loss": false`` (AgentGym's acknowledgement) is context only."""
    from datasets import Dataset
    from trl import SFTTrainer

    from affine.model import load_model
    from affine.sft import sft_config

    ack = {"role": "assistant", "content": "OK"} | ({} if ack_loss is None else {"loss": ack_loss})
    messages = [
        {"role": "user", "content": "instructions"},
        ack,
        {"role": "user", "content": "observation one"},
        {"role": "assistant", "content": "Thought:\nGo.\n\nAction:\nlook"},
        {"role": "user", "content": "observation two"},
        {"role": "assistant", "content": "Action:\ninventory"},
    ]
    model, tok = load_model(tiny_model_dir)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(params().sft, 0, tmp_path, has_cuda=False),
        train_dataset=Dataset.from_list([{"messages": messages}]),
        eval_dataset=Dataset.from_list([{"messages": messages}]),
        processing_class=tok,
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    trained = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != -100])
    ack_target = "OK<|im_end|>" if ack_loss is None else ""
    assert trained == ack_target + "Thought:\nGo.\n\nAction:\nlook<|im_end|>Action:\ninventory<|im_end|>"
    # the training text is byte-identical to what evaluation renders (same template, same system line)
    full = tok.apply_chat_template(messages, tokenize=False)
    assert tok.decode(ids) == full


def test_training_lr_ends_at_min_ratio_and_best_checkpoint_kept(tiny_model_dir, tmp_path):
    data = write_examples(tmp_path / "sft.jsonl")
    p = params(max_steps=6, learning_rate=5.0e-2)
    summary = train_sft(p, tiny_model_dir, data, tmp_path / "out", tmp_path / "ckpt", tmp_path / "metrics")
    assert summary["steps"] == 6 and summary["train_tokens_per_s"] > 0
    state = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert "eval" in state or "train" in state
    # the cosine schedule ends at min_lr_ratio (0.1) of the peak, and decays monotonically after warmup
    assert summary["final_learning_rate"] == pytest.approx(0.1 * 5.0e-2, rel=1e-6)
    lr_log = (tmp_path / "metrics" / "plots" / "metrics" / "learning_rate.tsv").read_text().splitlines()[1:]
    lrs = [float(line.split("\t")[-1]) for line in lr_log]
    assert max(lrs) == pytest.approx(5.0e-2) and lrs[1:] == sorted(lrs[1:], reverse=True)
    evals = [
        float(line.split("\t")[-1])
        for line in (tmp_path / "metrics" / "plots" / "metrics" / "eval" / "loss.tsv").read_text().splitlines()[1:]
    ]
    assert summary["eval_loss"] == pytest.approx(min(evals), rel=1e-4)
    assert summary["best_checkpoint"].endswith(f"checkpoint-{2 * (1 + evals.index(min(evals)))}")
    adapter = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert adapter["target_modules"] == sorted(adapter["target_modules"]), "set order would follow the hash seed"
    assert not (tmp_path / "ckpt").exists(), "crash-resume checkpoints are removed after success"


def test_same_seed_and_data_train_the_same_adapter_bit_for_bit(tiny_model_dir, tmp_path):
    """What makes two ``dvc repro`` runs on one machine agree: seeded split, dropout and batches, and no kernel whose
    rounding varies from run to run (sft.bf16 on, so on a CPU with native bf16 this is the autocast path the stage
    takes).  Another CPU may round differently: the stage's base loss moved 1.7210 -> 1.7223 between two machines."""
    data = write_examples(tmp_path / "sft.jsonl")
    runs = []
    for run in ("a", "b"):
        out = tmp_path / run
        train_sft(params(max_steps=3, lora_dropout=0.1), tiny_model_dir, data, out / "model", out / "ckpt", out / "m")
        loss = (out / "m" / "plots" / "metrics" / "loss.tsv").read_text()
        runs.append(((out / "model" / "adapter_model.safetensors").read_bytes(), loss))
    assert len(runs[0][1].splitlines()) == 4, "three logged steps"
    assert runs[0] == runs[1]


@pytest.mark.parametrize("checkpointing", [True, False])
def test_sft_config_sets_checkpointing_without_warnings(tmp_path, checkpointing):
    """The param reaches the trainer, and no checkpointing deprecation warning is logged on every SFT run."""
    from affine.sft import sft_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = sft_config(params(gradient_checkpointing=checkpointing).sft, 0, tmp_path, has_cuda=False)
    assert args.gradient_checkpointing is checkpointing
    assert not [str(w.message) for w in caught if "checkpointing" in str(w.message)]


def test_stale_checkpoints_are_discarded(tmp_path):
    ckpt = tmp_path / "ckpt"
    (ckpt / "checkpoint-2").mkdir(parents=True)
    (ckpt / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (ckpt / "fingerprint.json").write_text(json.dumps({"sft": {"learning_rate": 1}}))
    assert latest_checkpoint(ckpt, {"sft": {"learning_rate": 1}}).endswith("checkpoint-2")
    assert latest_checkpoint(ckpt, {"sft": {"learning_rate": 2}}) is None
    assert not (ckpt / "checkpoint-2").exists(), "a checkpoint of other params is deleted, never resumed"
    assert json.loads((ckpt / "fingerprint.json").read_text()) == {"sft": {"learning_rate": 2}}


def test_code_is_part_of_the_fingerprint(tmp_path, monkeypatch):
    """A rerun after a code change (what DVC does) must train afresh, not resume the old code's checkpoints."""
    import affine.sft
    from affine.checkpoints import content_hash, source_hash

    data = tmp_path / "rows.jsonl"
    data.write_text("{}\n")
    params = parse_params({})
    before = affine.sft.fingerprint(params, data)
    assert before["code_sha256"] == source_hash()
    monkeypatch.setattr(affine.sft, "source_hash", lambda: "other code")
    assert affine.sft.fingerprint(params, data) != before

    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"one")
    sources = content_hash(package, "*.py")
    (package / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"two")  # bytecode appears and changes mid-run
    assert content_hash(package, "*.py") == sources
    (package / "a.py").write_text("x = 2\n")
    assert content_hash(package, "*.py") != sources


RUNNER = """
import json, sys, time
from pathlib import Path
from transformers import TrainerCallback
from affine.config import parse_params
from affine.sft import train_sft
from affine.threads import configure_threads

class HoldAfterFirstSave(TrainerCallback):
    # the first run stops making progress once a checkpoint is complete, and says so: the test kills it then,
    # so where the kill lands depends on progress, never on how fast this machine is
    def on_save(self, args, state, control, **kwargs):
        Path(sys.argv[7]).write_text(str(state.global_step))
        time.sleep(3600)

p = parse_params(json.loads(sys.argv[1]))
configure_threads(p.base.num_threads)  # as stages/sft.py does at start
hold = [HoldAfterFirstSave()] if len(sys.argv) > 7 else []
s = train_sft(p, sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], callbacks=hold)
print("SUMMARY" + json.dumps(s))
"""


def test_resume_after_sigkill(tiny_model_dir, tmp_path):
    """SIGKILL the whole run right after its first checkpoint is written, then rerun: it resumes and finishes.

    The kill is triggered by progress (a callback pauses the run after its first save and writes a marker), so the
    test proves the same thing on an idle or a loaded machine; HANG_GUARD_S only ends a run that never gets there.
    """
    data = write_examples(tmp_path / "sft.jsonl", n=40)
    raw = json.dumps({"base": {"seed": 0}, "sft": {**SFT, "max_steps": 6, "eval_steps": 2, "save_steps": 2}})
    args = [sys.executable, "-c", RUNNER, raw, tiny_model_dir, str(data)] + [
        str(tmp_path / d) for d in ("out", "ckpt", "metrics")
    ]
    marker = tmp_path / "saved"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "first_run.log"  # a file, not a pipe: an undrained pipe would block the run once full
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            args + [str(marker)], env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
        try:
            deadline = time.monotonic() + HANG_GUARD_S
            while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert marker.exists(), f"no checkpoint (exit code {proc.poll()}): {log.read_text()[-2000:]}"
        finally:
            kill_group(proc)
    assert proc.returncode == -signal.SIGKILL, "the first run was killed, it did not finish"
    saved = sorted(
        int(p.parent.name.split("-")[1]) for p in (tmp_path / "ckpt").glob("checkpoint-*/trainer_state.json")
    )
    assert saved == [int(marker.read_text())] == [2], "killed mid-training, right after its first checkpoint"
    assert not (tmp_path / "out").exists(), "a killed run leaves no final model"

    done = run_guarded(args, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.split("SUMMARY", 1)[1])
    assert summary["resumed_from"] == str(tmp_path / "ckpt" / "checkpoint-2")
    assert summary["steps"] == 6
    assert (tmp_path / "out" / "adapter_config.json").is_file()
