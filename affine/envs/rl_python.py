"""Where ABD and DED rows come from: the generated offline corpus, the real ``rl-python`` dataset, or local files.

Real rows (``AffineFoundation/rl-python``, the same 23,303 rows as ``satpalsr/rl-python``) have ``program``,
``inputs``, ``output``, ``prompt`` and ``test_cases`` (or ``verification_info``).  They load through
``datasets.load_dataset`` or from local ``.json``/``.jsonl``/``.parquet`` files in that schema.

Task ids as the validator's (``hub``/``files``): since 2025-11 the validator's ABD/DED task id ``k`` is row ``k`` of the
dataset's ``train`` split, so with ``split: all`` seed ``k`` is exactly row ``k``.  Our ``train`` and ``eval`` splits
partition those rows by a hash of the program text (:func:`affine.envs.programs.split_of`: a fixed fifth of all
program texts is ``eval``), so a row -- and a program, even one repeated on several rows -- is never in both; seed
``i`` of a split is the split's ``i``-th row in row order.  Seeds past the end wrap around.  The challenge records the
row index (``row_index``, and in ``task_id``), which is the validator's task id for that row.

The generated ``offline`` corpus keeps the older buffered draw (``buffer_size``): seeds ``b*buffer_size`` to
``b*buffer_size + buffer_size - 1`` get consecutive rows from one offset drawn from ``b``, as Affine's buffer handed out
runs of consecutive rows before task ids existed; it keeps the default pipeline's data unchanged.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from affine.envs.programs import generate_corpus, split_of
from affine.envs.templates import PromptTemplate
from affine.sandbox import Limits, RunResult, run_program

log = logging.getLogger(__name__)

DEFAULT_DATASET = "AffineFoundation/rl-python"
SOURCES = ("offline", "hub", "files")
SPLITS = ("train", "eval", "all")
_SUFFIXES = (".jsonl", ".json", ".parquet")

# The validator executor's three fence patterns, tried in this order (AffineFoundation/affinetes, environments/affine).
_PYTHON_BLOCK = re.compile(r"```python\s*\n(.*?)```", re.DOTALL)
_WORD_BLOCK = re.compile(r"```\w*\s*\n(.*?)```", re.DOTALL)
_LOOSE_FENCE = re.compile(r"```(?:python)?\s*([\s\S]*?)```", re.IGNORECASE)


def strip_fences(text: str) -> str:
    """The code the validator's executor runs for ``text``, stripped: its fence rules, edge cases included.

    The last ```` ```python ```` block (newline after the tag), else the last block whose tag is one word (or none),
    else the *first* loose fence (which takes code on the fence line, ```` ```python a = 1 ````), else the whole text.
    Kept as the validator has them on purpose, even where they surprise: ```` ``` python ```` (a space) matches only
    the loose fence, so the word ``python`` is run as code (and fails); with only inline fences the first one wins.
    """
    for pattern in (_PYTHON_BLOCK, _WORD_BLOCK):
        blocks = pattern.findall(text)
        if blocks:
            return blocks[-1].strip()
    match = _LOOSE_FENCE.search(text)
    return (match.group(1) if match else text).strip()


class DatasetUnavailable(ValueError):
    """The dataset cannot be loaded here (no network, no ``datasets``, a missing file); the message says what to do."""


def _read_file(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if isinstance(data, dict):  # {"rows": [...]} / {"data": [...]} / {"train": [...]}
        data = next((v for v in data.values() if isinstance(v, list)), [])
    return list(data)


def load_local(paths: str | Path | Sequence[str | Path]) -> list[dict]:
    """Rows from ``.json``/``.jsonl``/``.parquet`` files, or from every such file in a folder (sorted by name)."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    files = [f for p in paths for f in (sorted(x for x in p.iterdir() if x.suffix in _SUFFIXES) if p.is_dir() else [p])]
    where = ", ".join(map(str, paths)) or "(no files given)"
    if not files or not all(f.is_file() for f in files):
        raise DatasetUnavailable(f"no rl-python rows at {where} (expected {', '.join(_SUFFIXES)} files or folders)")
    try:
        rows = [row for f in files for row in _read_file(f)]
    except (OSError, ValueError) as exc:
        raise DatasetUnavailable(f"cannot read rl-python rows from {where}: {exc}") from None
    missing = {"program", "inputs", "output"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise DatasetUnavailable(f"{where} holds no rows in the rl-python schema (missing {sorted(missing)})")
    return rows


def load_hub(dataset: str = DEFAULT_DATASET) -> Sequence[dict]:
    """The dataset's ``train`` split through ``datasets.load_dataset`` (cached by ``datasets`` after the first time)."""
    try:
        import datasets

        return datasets.load_dataset(dataset, split="train")
    except Exception as exc:  # offline, no package, gated, renamed: all mean the same to the caller
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DatasetUnavailable(
            f"cannot load {dataset!r} from the Hugging Face hub ({type(exc).__name__}: {reason}); "
            "without network access set `source: offline` to use the generated program corpus"
        ) from None


def buffered_index(seed: int, n_rows: int, buffer_size: int = 5) -> int:
    """Affine's buffered draw, made deterministic: runs of ``buffer_size`` consecutive rows from a random offset."""
    block, offset = divmod(seed, max(1, buffer_size))
    start = random.Random(f"rl-python-buffer:{block}").randrange(n_rows)
    return (start + offset) % n_rows


class RowSource:
    """Rows for ABD/DED.  ``source``: ``offline`` (generated; the default, needs no network), ``hub`` (``dataset`` is a
    hub id, default ``AffineFoundation/rl-python``) or ``files`` (``files``, or ``dataset`` when ``files`` is not
    given: .json/.jsonl/.parquet files or folders of them).  Real rows are addressed by row index (see the module
    docstring); ``buffer_size`` only shapes the offline corpus's draw.
    ``difficulty`` (1..3 or None) and ``families`` filter the offline corpus (``corpus_size`` rows, a quarter of
    that for ``eval``, which owns a fifth of all programs); real rows have no difficulty."""

    def __init__(
        self,
        source: str = "offline",
        *,
        dataset: str | Sequence[str] | None = None,
        files: Sequence[str] | None = None,
        split: str = "train",
        difficulty: int | None = 1,
        buffer_size: int = 5,
        corpus_size: int = 300,
        corpus_seed: int = 0,
        families: list[str] | None = None,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown rl-python source {source!r}; choose one of {', '.join(SOURCES)}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if source == "files" and not files and dataset:  # params may name the files through ``dataset``
            files, dataset = [dataset] if isinstance(dataset, (str, Path)) else list(dataset), None
        if source == "files" and not files:
            raise ValueError("source 'files' needs `files`: .json/.jsonl/.parquet files or folders of them")
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, not {buffer_size}")
        self.source, self.dataset, self.files, self.split = source, dataset or DEFAULT_DATASET, list(files or []), split
        self.difficulty, self.buffer_size, self.families = difficulty, buffer_size, families
        self.corpus_size, self.corpus_seed = corpus_size, corpus_seed
        self._rows: Sequence[dict] | None = None
        self._index: list[int] = []
        self._lock = threading.Lock()

    @property
    def rows(self) -> Sequence[dict]:
        with self._lock:
            return self._load()

    def _load(self) -> Sequence[dict]:
        if self._rows is None:
            if self.source == "offline":
                split = None if self.split == "all" else self.split
                n = max(1, self.corpus_size // 4) if split == "eval" else self.corpus_size  # eval: a fifth of programs
                rows = generate_corpus(self.corpus_seed, n, self.difficulty, self.families, split)
            else:
                rows = load_hub(self.dataset) if self.source == "hub" else load_local(self.files)
            programs = rows["program"] if hasattr(rows, "column_names") else [r["program"] for r in rows]
            self._index = [i for i, p in enumerate(programs) if self.split == "all" or split_of(p) == self.split]
            if not self._index:
                raise DatasetUnavailable(f"no rows in split {self.split!r} of the {self.source} rl-python data")
            self._rows = rows
        return self._rows

    def __len__(self) -> int:
        self.rows  # noqa: B018 - loads the rows and the split index
        return len(self._index)

    def row(self, seed: int) -> tuple[int, dict[str, Any]]:
        """``(row index, row)`` for ``seed``; the index is stable, so it serves as the task id.

        Real rows: the split's ``seed``-th row (row ``seed`` itself with ``split="all"``, the validator's task id);
        the offline corpus: Affine's older buffered draw.
        """
        rows = self.rows
        n = len(self._index)
        if self.source == "offline":
            position = buffered_index(seed, n, self.buffer_size)
        elif seed < 0:
            raise ValueError(f"a task seed is a non-negative row number, got {seed}")
        else:
            position = seed % n
        index = self._index[position]
        return index, dict(rows[index])


class RLPythonTask:
    """What ABD and DED share: the row source, and running a program the way Affine's executor does, in the sandbox.

    Options (all keyword, all defaulted): ``source``, ``difficulty``, ``dataset``, ``buffer_size``, ``split``,
    ``files``, ``corpus_size``, ``corpus_seed``, ``families`` (see :class:`RowSource`) and ``limits`` (a
    :class:`affine.sandbox.Limits` or a dict of its fields; Affine's limits by default) and ``prompt_file`` (a
    template replacing the task's default prompt, see :mod:`affine.envs.templates`).
    ``score`` is thread-safe: callers may score many replies at once from a thread pool.
    """

    name = "affine:rl-python"

    def __init__(
        self,
        source: str = "offline",
        difficulty: int | None = 1,
        dataset: str | Sequence[str] | None = None,
        buffer_size: int = 5,
        split: str = "train",
        files: Sequence[str] | None = None,
        corpus_size: int = 300,
        corpus_seed: int = 0,
        families: list[str] | None = None,
        limits: Limits | Mapping[str, Any] | None = None,
        prompt_file: str | None = None,
    ) -> None:
        self.template = PromptTemplate(self.name, prompt_file)
        self.rows = RowSource(
            source, dataset=dataset, files=files, split=split, difficulty=difficulty, buffer_size=buffer_size,
            corpus_size=corpus_size, corpus_seed=corpus_seed, families=families,
        )  # fmt: skip
        self.limits = Limits(**limits) if isinstance(limits, Mapping) else (limits or Limits())

    def execute(self, program: str, stdin: str) -> RunResult:
        """Affine's ``executor.execute``: strip fences its way, run (with the ``solve()`` rule).

        Only the sandbox's own setup failure raises (``SandboxUnavailable``: not the reply's fault, and a silent 0
        would poison rewards); nothing the program does can.
        """
        return run_program(strip_fences(program), stdin, self.limits)
