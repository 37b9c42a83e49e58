"""The prompt text of each single-turn task, read from a template file so it can be swapped for another.

Why files: a model is judged on the exact text its evaluator sends, so ``envs.<task>.prompt_file`` replaces a task's
template and the SFT data, RL rollouts and evaluation all use the new text.  The defaults
(``affine/envs/prompts/{sat,abd,ded}.txt``) are our own words and ask for exactly the answer format each scorer
parses.  A template is ``str.format`` text: ``{name}`` is replaced by one of the task's fields (:data:`FIELDS`),
``{{`` and ``}}`` are literal braces, and the file is used byte for byte (no newline stripped or added).
"""

from __future__ import annotations

import string
from pathlib import Path

DEFAULT_DIR = Path(__file__).with_name("prompts")

# task -> (fields a template must use, fields it may use)
FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "affine:sat": (frozenset({"formula"}), frozenset({"formula", "k", "n"})),
    "affine:abd": (frozenset({"program", "output"}), frozenset({"program", "output"})),
    "affine:ded": (frozenset({"prompt"}), frozenset({"prompt"})),
}


class PromptTemplate:
    """A task's template, checked when loaded: a bad file stops the stage that builds the env, with one line."""

    def __init__(self, task: str, path: str | Path | None = None) -> None:
        if task not in FIELDS:
            raise ValueError(f"no prompt template for {task!r}; known: {', '.join(FIELDS)}")
        self.task, self.path = task, Path(path) if path else DEFAULT_DIR / f"{task.split(':', 1)[1]}.txt"
        where = str(self.path)
        try:
            self.text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: cannot read the prompt template ({exc})") from None
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(self.text) if name is not None}
        except ValueError as exc:  # a lone "{" or "}"
            raise ValueError(f"{where}: not a format template ({exc}); write literal braces as {{{{ and }}}}") from None
        required, allowed = FIELDS[task]
        unknown, missing = sorted(used - allowed), sorted(required - used)
        if unknown or missing:
            raise ValueError(
                f"{where}: unknown fields {unknown}, missing fields {missing} (fields: {', '.join(sorted(allowed))})"
            )

    def render(self, **fields: object) -> str:
        return self.text.format(**fields)
